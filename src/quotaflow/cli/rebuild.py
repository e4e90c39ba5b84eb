"""``quotaflow rebuild-counters``: reload the shared counters (Redis) from the ledger."""

from __future__ import annotations

import asyncio
import sys

import click
import orjson

from quotaflow.cli.serve import load_or_exit
from quotaflow.config.model import Config
from quotaflow.config.schema import AgentSpec
from quotaflow.engine.limits import Limit
from quotaflow.runtime import build_gateway, data_home
from quotaflow.storage.counters.rebuild import LedgerSource, check_agreement


async def rebuild_counters(config: Config, home_dir: str | None, *, check_only: bool) -> int:
    """Reload (or only check) every limit; returns the exit code."""
    home = data_home(home_dir)
    gw = build_gateway(config, home)
    counters = gw.counters
    if not counters.shared:
        click.echo("embedded counters are rebuilt from the ledger at every start: nothing to do")
        return 0
    from quotaflow.services.agents import agent_limits

    await gw.ledger.open()
    try:
        limits: dict[str, Limit] = {lim.id: lim for lim in gw.all_limits()}
        for spec in config.agents:
            limits.update((lim.id, lim) for lim in agent_limits(spec))
        for _, _, spec_json in await gw.ledger.stored_agents():  # made through the admin API
            spec = AgentSpec.model_validate(orjson.loads(spec_json))
            limits.update((lim.id, lim) for lim in agent_limits(spec))
        source = LedgerSource(gw.ledger, lambda: list(limits.values()))
        if not check_only:
            if not await counters.rebuild(source):  # type: ignore[attr-defined]
                click.echo("another replica is reloading the counters right now", err=True)
                return 1
            click.echo(f"reloaded {len(limits)} limit(s) from the ledger")
        now = gw.clock.now()
        usages = await counters.snapshot(list(limits.values()), now)
        found = await check_agreement(usages, gw.ledger, list(limits.values()), now, config.tz)
        for d in found:
            click.echo(d.describe())
        click.echo(f"{len(limits) - len(found)} of {len(limits)} limit(s) agree with the ledger")
        return 1 if found else 0
    finally:
        await gw.ledger.close()
        await counters.close()


@click.command("rebuild-counters")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config.")
@click.option("--home", type=click.Path(file_okay=False), default=None, help="Data folder.")
@click.option("--check", is_flag=True, help="Only compare the counters with the ledger.")
def rebuild(config_path: str | None, home: str | None, check: bool) -> None:
    """Reload the shared counters (Redis) from the ledger (PostgreSQL), the source of truth.

    New requests get 503 for the moment of the reload (about a second); attempts in flight
    are counted at their reserved worst case. Exits 1 when counters and ledger disagree.
    """
    config = load_or_exit(config_path)
    sys.exit(asyncio.run(rebuild_counters(config, home, check_only=check)))
