"""Writing a :class:`UsageReport` as text (full or compact), CSV or JSON.

Every format carries the same totals: the JSON's ``totals``, the CSV's ``TOTAL`` row and
the text's ``TOTAL`` line all add up the ledger rows of the period.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from quotaflow.reports.usage import UsageReport
from quotaflow.storage.base import UsageTotals

FORMATS = {".txt": "txt", ".text": "txt", ".csv": "csv", ".json": "json"}
CSV_FIELDS = (
    "group",
    "attempts",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "cost_estimated",
)


def format_for(path: str | Path) -> str:
    """``txt``, ``csv`` or ``json`` from the file's extension; ValueError for another one."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot export to {Path(path).name!r}: use a .txt, .csv or .json file")
    return FORMATS[ext]


def when(ts: float | None, tz: ZoneInfo) -> str:
    if ts is None or math.isinf(ts):
        return "never"
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")


def days_text(days: float) -> str:
    return "unlimited" if math.isinf(days) else f"~{days:,.1f} days"


def to_json(report: UsageReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"


def to_csv(report: UsageReport) -> str:
    """One row per group, then a ``TOTAL`` row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow((report.group_by, *CSV_FIELDS[1:]))
    for row in (*report.groups, report.total):
        w.writerow(_cells(row))
    return buf.getvalue()


def _cells(t: UsageTotals) -> tuple[str, ...]:
    return (
        t.group,
        str(t.attempts),
        str(t.requests),
        str(t.errors),
        str(t.prompt_tokens),
        str(t.completion_tokens),
        str(t.total_tokens),
        f"{t.cost_usd:.6f}",
        "true" if t.estimated_cost else "false",
    )


def to_text(report: UsageReport, tz: ZoneInfo, *, compact: bool = False) -> str:
    """The plain-text report; ``compact`` keeps one line per provider and the total."""
    lines = [
        "quotaflow usage report",
        f"generated {when(report.generated_at, tz)}; period {when(report.since, tz) if report.since else 'all time'}"
        f" → {when(report.until, tz) if report.until else 'now'}",
        "",
    ]
    if report.providers:
        lines.append("QUOTAS")
        for p in report.providers:
            lines.append(
                f"  {p.provider:<14} {p.state.upper():<9} {p.used:>14,.0f} / {p.amount:<14,.0f}"
                f" {p.metric}/{p.window:<6} {p.used_pct:6.1f}%  resets {when(p.resets_at, tz)}"
            )
        lines.append("")
    if not compact:
        lines.append(f"USAGE BY {report.group_by.upper()}")
        header = f"  {'':<28} {'attempts':>9} {'requests':>9} {'errors':>7} {'prompt':>11} {'completion':>11} {'tokens':>12} {'cost_usd':>12}"
        lines.append(header)
        for g in report.groups:
            lines.append(_text_row(g))
    lines.append(_text_row(report.total))
    lines += ["", outcomes_line(report)]
    if report.total.estimated_cost:
        lines.append(ESTIMATED_NOTE)
    if report.alerts and not compact:
        lines += ["", "ALERTS", *(f"  {a.message}" for a in report.alerts)]
    if report.lifespan is not None:
        ls = report.lifespan
        lines += ["", f"ESTIMATED LIFESPAN at {ls.avg_tokens_per_day:,.0f} tokens/day"]
        for pl in ls.providers:
            lines.append(f"  {pl.provider:<14} {days_text(pl.days):<18} {pl.note}")
        total = f"~{ls.total_days:,.1f} days"
        if ls.continuous:
            total += " (+ daily resets give continuous backup)"
        lines.append(f"  {'TOTAL':<14} {total}")
    return "\n".join(lines) + "\n"


ESTIMATED_NOTE = (
    "~ cost estimated: part of it is booked at a stand-in price (a model with no known "
    "price, settings.unpriced) or on guessed tokens"
)


def cost_text(t: UsageTotals, digits: int = 6) -> str:
    """A cost, marked ``~`` when part of it is an estimate."""
    return f"{'~' if t.estimated_cost else ''}{t.cost_usd:.{digits}f}"


def outcomes_line(report: UsageReport) -> str:
    o = report.outcomes
    return (
        f"requests: {o.requests:,} — {o.answered:,} answered, {o.refused:,} refused "
        f"(no key could take them), {o.failed:,} failed"
    )


def _text_row(t: UsageTotals) -> str:
    name = t.group if len(t.group) <= 28 else t.group[:27] + "…"
    return (
        f"  {name:<28} {t.attempts:>9} {t.requests:>9} {t.errors:>7} {t.prompt_tokens:>11}"
        f" {t.completion_tokens:>11} {t.total_tokens:>12} {cost_text(t):>12}"
    )


def export(report: UsageReport, path: str | Path, tz: ZoneInfo, *, compact: bool = False) -> str:
    """Write the report to ``path`` in the format its extension names; returns the format."""
    fmt = format_for(path)
    text = {"json": lambda: to_json(report), "csv": lambda: to_csv(report)}.get(
        fmt, lambda: to_text(report, tz, compact=compact)
    )()
    Path(path).write_text(text, encoding="utf-8")
    return fmt
