"""``quotaflow report``: seed 002's usage monitor — full, compact, exported, with lifespan."""

from __future__ import annotations

import click
from rich.table import Table

from quotaflow.cli.exit_codes import EXIT_USAGE
from quotaflow.cli.render import (
    clock_at,
    console,
    emit_json,
    fail,
    json_option,
    parse_instant,
    when,
)
from quotaflow.cli.target import load_config_or_exit, local_options, run_local
from quotaflow.reports.collect import collect_report
from quotaflow.reports.export import (
    ESTIMATED_NOTE,
    cost_text,
    days_text,
    export,
    format_for,
    outcomes_line,
    to_text,
)
from quotaflow.reports.usage import GROUPS, UsageReport
from quotaflow.storage.base import UsageTotals


@click.command("report")
@local_options
@json_option
@click.option(
    "--compact",
    is_flag=True,
    help="The quotas (a line per provider and reset window) and the total only.",
)
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the report to FILE: .txt, .csv or .json by extension.",
)
@click.option(
    "--avg-tokens",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="N",
    help="Estimate each provider's lifespan (and the total) at N tokens a day.",
)
@click.option(
    "--since",
    default=None,
    help="Start of the period: 2026-03-01, 2026-03-01T12:00, epoch s, or 7d / 24h ago.",
)
@click.option("--until", default=None, help="End of the period (same forms; default now).")
@click.option(
    "--group-by",
    "group_by",
    type=click.Choice(GROUPS),
    default="provider",
    show_default=True,
    help="Group usage by provider, key, agent, model or (local) day.",
)
@click.option("--now", "now_text", default=None, hidden=True, help="Pretend it is this instant.")
def report(
    config_path: str | None,
    home: str | None,
    as_json: bool,
    compact: bool,
    export_path: str | None,
    avg_tokens: float | None,
    since: str | None,
    until: str | None,
    group_by: str,
    now_text: str | None,
) -> None:
    """Usage from the ledger: tokens, requests, errors and cost per group, each provider's
    quota state, alerts (75 / 90 / 95 %), and with --avg-tokens how long quotas last.

    Reads the data folder's ledger (safe while a server runs on it), never a server: run it
    with --home where the server's data folder is. Exit 0, or 2 on bad options or when
    there is no ledger in the data folder.
    """
    config = load_config_or_exit(config_path)
    clock = clock_at(now_text, config.tz)
    now = clock.now()
    start = parse_instant(since, now, config.tz, param="--since") if since else None
    end = parse_instant(until, now, config.tz, param="--until") if until else None
    if start is not None and end is not None and end <= start:
        fail("--until must be after --since", EXIT_USAGE)
    if export_path:
        try:
            format_for(export_path)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    rep = run_local(
        config,
        home,
        lambda runtime: collect_report(
            runtime.gateway,
            now=now,
            since=start,
            until=end,
            group_by=group_by,
            avg_tokens_per_day=avg_tokens,
        ),
        clock=clock,
        reads="report",
    )
    if export_path:
        fmt = export(rep, export_path, config.tz, compact=compact)
        if not as_json:
            click.echo(f"report written to {export_path} ({fmt})", err=True)
    if as_json:
        emit_json(rep.to_dict())
    elif not export_path or compact:
        show(rep, config.tz, compact=compact)
    else:
        click.echo(to_text(rep, config.tz, compact=False), nl=False)


def _cells(g: UsageTotals) -> tuple[str, ...]:
    return (
        g.group,
        str(g.attempts),
        str(g.requests),
        str(g.errors),
        f"{g.total_tokens:,}",
        cost_text(g, 4),
    )


def show(rep: UsageReport, tz: object, *, compact: bool) -> None:
    """The report as rich tables."""
    from zoneinfo import ZoneInfo

    assert isinstance(tz, ZoneInfo)
    out = console()
    if rep.providers:
        t = Table(title="Quotas", title_justify="left")
        for col in ("provider", "state", "used", "quota", "used %", "resets"):
            t.add_column(col, justify="right" if col in ("used", "quota", "used %") else "left")
        for p in rep.providers:
            t.add_row(
                p.provider,
                p.state.upper(),
                f"{p.used:,.0f}",
                f"{p.amount:,.0f} {p.metric}/{p.window}",
                f"{p.used_pct:.1f}",
                when(p.resets_at, tz),
            )
        out.print(t)
    t = Table(title=f"Usage by {rep.group_by}", title_justify="left", show_footer=True)
    names = ("group", "attempts", "requests", "errors", "tokens", "cost $")
    for name, footer in zip(names, _cells(rep.total), strict=True):
        t.add_column(name, footer=footer, justify="left" if name == "group" else "right")
    for g in [] if compact else rep.groups:
        t.add_row(*_cells(g))
    out.print(t)
    out.print(outcomes_line(rep))
    if rep.total.estimated_cost:
        out.print(f"[yellow]{ESTIMATED_NOTE}[/yellow]")
    if rep.alerts and not compact:
        for a in rep.alerts:
            out.print(f"[yellow]⚠ {a.message}[/yellow]")
    if rep.lifespan is not None:
        ls = rep.lifespan
        t = Table(
            title=f"Estimated lifespan at {ls.avg_tokens_per_day:,.0f} tokens/day",
            title_justify="left",
        )
        t.add_column("provider")
        t.add_column("lasts", justify="right")
        t.add_column("note")
        for pl in ls.providers:
            t.add_row(pl.provider, days_text(pl.days), pl.note)
        total = f"~{ls.total_days:,.1f} days" + (" + daily resets" if ls.continuous else "")
        t.add_row("TOTAL", total, "continuous backup from daily resets" if ls.continuous else "")
        out.print(t)
