"""``quotaflow compact``: fold old ledger rows into the ledger's totals and delete them."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import click

from quotaflow.cli.exit_codes import EXIT_USAGE
from quotaflow.cli.render import clock_at, fail
from quotaflow.cli.target import load_config_or_exit, local_options
from quotaflow.config.model import Config
from quotaflow.runtime import build_gateway, data_home
from quotaflow.storage.ledgers.sql import retention_cutoff


async def compact_ledger(config: Config, home_dir: str | None, days: float, now: float) -> int:
    """Compact what is older than ``days``; returns how many rows were deleted."""
    gw = build_gateway(config, data_home(home_dir))
    await gw.ledger.open()
    try:
        return await gw.ledger.compact(retention_cutoff(now, days))
    finally:
        await gw.ledger.close()
        await gw.counters.close()


@click.command("compact")
@local_options
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=1),
    default=None,
    metavar="DAYS",
    help="Compact rows older than DAYS days (default: settings.ledger_retention_days).",
)
@click.option("--now", "now_text", default=None, hidden=True, help="Pretend it is this instant.")
def compact(
    config_path: str | None, home: str | None, days: float | None, now_text: str | None
) -> None:
    """Fold ledger rows older than DAYS days into the ledger's daily and 15-minute totals,
    then delete them.

    Every report keeps its totals: tokens, requests, errors and cost per provider, key,
    agent, model and day, estimated-cost marks, token usage, the limits' windows, forecasts
    and the count of requests by how they ended. What goes is the rows themselves: the
    history and the request log of that time, latency samples, and spans finer than 15
    minutes. Compaction stops at the start of a UTC day; requests still in flight are left.
    The server does the same every hour when settings.ledger_retention_days is set; this
    runs it now; it can run beside a server (one 15-minute chunk per transaction).
    """
    config = load_config_or_exit(config_path)
    days = days if days is not None else config.settings.ledger_retention_days
    if days is None:
        fail("give --older-than DAYS or set settings.ledger_retention_days", EXIT_USAGE)
    now = clock_at(now_text, config.tz).now()
    deleted = asyncio.run(compact_ledger(config, home, days, now))
    before = datetime.fromtimestamp(retention_cutoff(now, days), UTC).strftime("%Y-%m-%d")
    click.echo(f"compacted {deleted} ledger row(s) from before {before} (UTC); totals kept")
    sys.exit(0)
