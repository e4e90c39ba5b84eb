"""``quotaflow forecast``: when each quota runs out at the recent burn rate, and blackouts."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import click
from rich.table import Table

from quotaflow.cli.exit_codes import EXIT_FAILED
from quotaflow.cli.render import clock_at, console, emit_json, json_option, when
from quotaflow.cli.target import load_config_or_exit, local_options, run_local
from quotaflow.config.describe import money, number_text
from quotaflow.reports.burn import DEFAULT_HALF_LIFE_S, DEFAULT_LOOKBACK_S
from quotaflow.reports.collect import collect_forecast
from quotaflow.reports.forecast import DEFAULT_HORIZON_S


def runs_out(exhausts_at: float | None, resets_at: float | None, tz: ZoneInfo) -> str:
    """When a quota runs out at this rate; "after reset" when its window resets first (it
    would run out only weeks ahead, after many resets: a date there would mislead)."""
    if exhausts_at is not None and resets_at is not None and exhausts_at >= resets_at:
        return "after reset"
    return when(exhausts_at, tz)


def quantity(metric: str, amount: float) -> str:
    """``200,000 tokens``, ``$0.0001`` (money with enough digits: a limit under a cent too)."""
    return money(amount) if metric == "cost" else f"{amount:,.0f} {metric}"


def rate_text(metric: str, per_hour: float) -> str:
    return money(per_hour) if metric == "cost" else f"{per_hour:,.1f}"


@click.command("forecast")
@local_options
@json_option
@click.option(
    "--half-life",
    "half_life_h",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_HALF_LIFE_S / 3600,
    show_default=True,
    help="Hours after which a past use weighs half as much in the burn rate.",
)
@click.option(
    "--lookback",
    "lookback_d",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LOOKBACK_S / 86400,
    show_default=True,
    help="Days of ledger history to read.",
)
@click.option(
    "--horizon",
    "horizon_d",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_HORIZON_S / 86400,
    show_default=True,
    help="Days ahead to look for blackouts.",
)
@click.option(
    "--now",
    "now_text",
    default=None,
    help="Forecast as of this instant (ISO date-time or epoch s); default now.",
)
def forecast(
    config_path: str | None,
    home: str | None,
    as_json: bool,
    half_life_h: float,
    lookback_d: float,
    horizon_d: float,
    now_text: str | None,
) -> None:
    """For every key's quota: when it runs out at the recent (exponentially weighted) burn
    rate versus when it resets; for every pool of keys serving a route: any blackout window
    in which all of them are empty before a reset.

    Reads the data folder's ledger (--home), never a server. Exit 0 when no blackout is
    ahead, 1 when one is, 2 on bad options or when there is no ledger in the data folder.
    """
    config = load_config_or_exit(config_path)
    clock = clock_at(now_text, config.tz)
    now = clock.now()
    fc = run_local(
        config,
        home,
        lambda runtime: collect_forecast(
            runtime.gateway,
            now=now,
            lookback_s=lookback_d * 86400,
            half_life_s=half_life_h * 3600,
            horizon_s=horizon_d * 86400,
        ),
        clock=clock,
        reads="forecast",
    )
    if as_json:
        emit_json(fc.to_dict())
    else:
        out = console()
        t = Table(title="Quotas at the recent burn rate", title_justify="left")
        for col in ("key", "quota", "left", "burn/h", "runs out", "resets", ""):
            t.add_column(col, justify="right" if col in ("left", "burn/h") else "left")
        for f in fc.limits:
            flag = "[red]before reset[/red]" if f.runs_out_before_reset else ""
            t.add_row(
                f.scope.removeprefix("key:"),
                f"{quantity(f.metric, f.amount)}/{f.window}",
                number_text(f.metric, f.remaining),
                rate_text(f.metric, f.rate_per_hour),
                runs_out(f.exhausts_at, f.resets_at, config.tz),
                when(f.resets_at, config.tz),
                flag,
            )
        out.print(t)
        for p in fc.pools:
            left = f"{quantity(p.metric, p.remaining)} left"
            if p.unbounded_keys:  # their quota is not a number: the pool's left is unbounded
                left = f"no {p.metric} quota on {len(p.unbounded_keys)}"
            head = f"pool [bold]{p.route}[/bold] ({len(p.keys)} keys, {left}, {rate_text(p.metric, p.rate_per_hour)}/h)"
            if p.unbounded_keys:
                out.print(
                    f"{head}: no blackout (keys without a {p.metric} quota: {', '.join(p.unbounded_keys)})"
                )
            elif not p.blackouts:
                out.print(f"{head}: [green]no blackout[/green] within {horizon_d:g} days")
            if p.blackouts:
                b = p.blackouts[0]
                end = when(b.end, config.tz) if b.end is not None else "no reset"
                more = (
                    f" (+{len(p.blackouts) - 1} more within {horizon_d:g} days)"
                    if len(p.blackouts) > 1
                    else ""
                )
                out.print(f"{head}: [red]BLACKOUT[/red] {when(b.start, config.tz)} → {end}{more}")
    if fc.has_blackout:
        raise SystemExit(EXIT_FAILED)
