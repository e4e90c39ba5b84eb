"""``quotaflow alerts``: quotas at or above their alert levels (75 / 90 / 95 %), and history."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.markup import escape

from quotaflow.cli.exit_codes import EXIT_FAILED
from quotaflow.cli.render import console, emit_json, json_option
from quotaflow.cli.target import (
    Server,
    load_config_or_exit,
    local_options,
    run_local,
    server_options,
)

HISTORY_ROWS = 50  # the alerts raised lately, newest first


async def local_alerts(runtime: Any) -> dict[str, Any]:
    from quotaflow.reports.collect import collect_report
    from quotaflow.services.alerts import alerts_json

    engine = runtime.gateway
    rep = await collect_report(
        engine,
        now=engine.clock.now(),
        since=None,
        until=None,
        group_by="provider",
        avg_tokens_per_day=None,
    )
    rows = await runtime.store.list_alerts(HISTORY_ROWS)
    history = [
        {**d, "ts": a.ts} for a, d in zip(rows, await alerts_json(runtime.store, rows), strict=True)
    ]
    return {
        "success": True,
        "alerts": [asdict(a) for a in rep.alerts],
        "history": history,
        "count": len(rep.alerts),
    }


@click.group("alerts", invoke_without_command=True)
@click.pass_context
@local_options
@server_options
@json_option
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 when any quota is at or above an alert level (with --url: when any alert "
    "still holds), for cron and CI.",
)
def alerts(
    ctx: click.Context,
    config_path: str | None,
    home: str | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
    as_json: bool,
    check: bool,
) -> None:
    """Quotas at or above an alert level now (75 / 90 / 95 % by default), then the alerts
    raised lately with their time, each marked open (it still holds) or over (its quota
    fell back, the key was enabled again, or a later alert replaced it). With --url: the
    server's /api/token-usage/alerts, the open ones first.

    `quotaflow alerts test` sends a sample alert to each webhook of the configuration."""
    if ctx.invoked_subcommand is not None:
        return
    server = Server.of(url, token, token_file)
    config = None if server else load_config_or_exit(config_path)
    if server is not None:
        doc = server.call("GET", "/api/token-usage/alerts")
    else:
        assert config is not None
        doc = run_local(config, home, local_alerts, reads="alerts", or_url=True)
    if server is not None:  # the server lists the alerts raised, each marked active or not
        history = doc.get("alerts") or []
        active = [a for a in history if a.get("active", True)]
    else:
        history = doc.get("history") or []
        active = doc.get("alerts") or []
    if as_json:
        emit_json(doc)
    else:
        show(active, history, config.tz if config else None, server=server is not None)
    if check and active:
        raise SystemExit(EXIT_FAILED)


def show(
    active: list[dict[str, Any]],
    history: list[dict[str, Any]],
    tz: ZoneInfo | None,
    *,
    server: bool,
) -> None:
    """What holds now, then the alerts raised lately (newest first) with their time, each
    marked open (it still holds) or over."""
    out = console()
    if not active:
        what = "no alert holds now" if server else "every quota is below its first alert level"
        out.print(f"[green]no alerts[/green]: {what}")
    for a in active:
        since = f" (since {_stamp(a, tz)})" if server else ""
        out.print(f"[yellow]⚠[/yellow] {escape(str(a.get('message', a)))}{since}", highlight=False)
    if history:
        out.print("alerts raised, newest first:")
    for h in history:
        mark = _MARKS.get(h.get("active"), "    ")
        level = escape(f"{h.get('level', ''):<9}")
        out.print(f"  {_stamp(h, tz)}  {mark}  {level} {escape(str(h.get('message', '')))}")


# An alert still holding, or over (its subject fell back, or a later alert replaced it).
_MARKS: dict[Any, str] = {True: "[yellow]open[/yellow]", False: "[dim]over[/dim]"}


def _stamp(alert: dict[str, Any], tz: ZoneInfo | None) -> str:
    """The alert's time in ``tz`` (the config's), else in this machine's time zone."""
    ts = alert.get("ts")
    if not isinstance(ts, int | float):
        try:
            ts = datetime.fromisoformat(str(alert.get("timestamp"))).timestamp()
        except ValueError:
            return "?"
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


@alerts.command("test")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML config (default: ./quotaflow.yaml, else the environment).",
)
def alerts_test(config_path: str | None) -> None:
    """Send a sample alert to every webhook (`notify:` in the YAML, QUOTAFLOW_WEBHOOK_URL)."""
    import asyncio

    from quotaflow.gateway.upstream import make_client
    from quotaflow.services.notify import Delivery, host_of, send_test, transport_post

    config = load_config_or_exit(config_path)
    if not config.notify:
        raise click.ClickException(
            "no alert webhook is configured: add a `notify:` list to the YAML "
            "or set QUOTAFLOW_WEBHOOK_URL"
        )
    s = config.settings

    async def send_all() -> list[Delivery]:
        """Through the HTTP client the server uses (its proxy and timeouts)."""
        http = make_client(s.connect_timeout_s, proxy=s.proxy, kind=s.http_client)
        try:
            post = transport_post(lambda: http)
            return [await send_test(spec, post) for spec in config.notify]
        finally:
            await http.close()

    out = console()
    failed = 0
    for spec, result in zip(config.notify, asyncio.run(send_all()), strict=True):
        where = f"{host_of(spec.url)} ({spec.format})"
        if result.ok:
            out.print(f"[green]✓[/green] {where}: HTTP {result.status}")
        else:
            failed += 1
            out.print(f"[red]✗[/red] {where}: {result.error}")
    if failed:
        raise SystemExit(EXIT_FAILED)
