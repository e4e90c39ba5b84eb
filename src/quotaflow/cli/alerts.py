"""``quotaflow alerts``: quotas at or above their alert levels (75 / 90 / 95 %), and history."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from quotaflow.cli.exit_codes import EXIT_FAILED
from quotaflow.cli.render import console, emit_json, json_option, when
from quotaflow.cli.target import (
    Server,
    load_config_or_exit,
    local_options,
    run_local,
    server_options,
)


async def local_alerts(runtime: Any) -> dict[str, Any]:
    from quotaflow.reports.collect import collect_report

    engine = runtime.gateway
    rep = await collect_report(
        engine,
        now=engine.clock.now(),
        since=None,
        until=None,
        group_by="provider",
        avg_tokens_per_day=None,
    )
    history = [asdict(a) for a in await engine.ledger.list_alerts(50)]
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
    help="Exit 1 when any quota is at or above an alert level (for cron and CI).",
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
    """Quotas at or above an alert level now (75 / 90 / 95 % by default), and the alerts
    raised so far. With --url: the server's /api/token-usage/alerts.

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
    active = doc.get("alerts") or []
    if as_json:
        emit_json(doc)
    else:
        out = console()
        if not active:
            out.print("[green]no alerts[/green]: every quota is below its first alert level")
        for a in active:
            out.print(f"[yellow]⚠[/yellow] {a.get('message', a)}")
        for h in doc.get("history") or []:
            tz = config.tz if config else None
            stamp = when(h.get("ts"), tz) if tz else str(h.get("ts"))
            out.print(f"  {stamp}  {h.get('level', '')}  {h.get('message', '')}")
    if check and active:
        raise SystemExit(EXIT_FAILED)


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
