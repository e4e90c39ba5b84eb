"""The usage report's arithmetic: totals, days, quotas, lifespan (seed 002), alerts, exports."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from quotaflow.reports.export import format_for, to_csv, to_json, to_text
from quotaflow.reports.usage import (
    ProviderQuota,
    QuotaLine,
    build_report,
    by_day,
    lifespan,
    provider_quotas,
    threshold_alerts,
)
from quotaflow.storage.base import UsageTotals

PARIS = ZoneInfo("Europe/Paris")


def quota(provider: str, metric: str, window: str, amount: float, used: float) -> ProviderQuota:
    return ProviderQuota(
        provider, 1, 1, metric, window, amount, used, amount - used, 100 * used / amount, "ok", None
    )


def test_seed_002_lifespans_at_10k_tokens_a_day() -> None:
    quotas = [
        quota("cohere", "tokens", "month", 5_000_000, 0),
        quota("ai21", "tokens", "month", 300_000, 0),
        quota("groq", "requests", "day", 14_400, 0),
        quota("huggingface", "tokens", "month", 30_000, 0),
        quota("openai", "tokens", "once", 5_000, 0),
    ]
    ls = lifespan(quotas, 10_000, tokens_per_request=1000)
    days = {p.provider: p.days for p in ls.providers}
    assert days["cohere"] == pytest.approx(500)
    assert days["ai21"] == pytest.approx(30)
    assert math.isinf(days["groq"])  # resets daily with room for a day's usage
    assert days["huggingface"] == pytest.approx(3)
    assert days["openai"] == pytest.approx(0.5)
    assert ls.total_days == pytest.approx(533.5)
    assert ls.continuous is True
    with pytest.raises(ValueError, match="positive"):
        lifespan(quotas, 0, 1000)


def test_slots_regroup_into_local_days() -> None:
    late = datetime(2026, 3, 9, 23, 30, tzinfo=PARIS).timestamp()
    early = datetime(2026, 3, 10, 0, 15, tzinfo=PARIS).timestamp()
    slots = [
        UsageTotals(str(int(late)), 1, 1, 0, 1, 2, 3, 0.5),
        UsageTotals(str(int(early)), 2, 2, 1, 2, 4, 6, 1.0),
    ]
    days = by_day(slots, PARIS)
    assert [d.group for d in days] == ["2026-03-09", "2026-03-10"]
    assert days[1].total_tokens == 6 and days[1].errors == 1


def line(scope: str, provider: str, used_pct: float) -> QuotaLine:
    return QuotaLine(
        scope,
        provider,
        "tokens",
        "month",
        1000,
        used_pct * 10,
        1000 - used_pct * 10,
        used_pct,
        "ok",
        None,
    )


def test_alerts_at_75_90_95_and_provider_sums() -> None:
    lines = [line("key:a", "p", 76), line("key:b", "p", 96), line("key:c", "q", 10)]
    alerts = threshold_alerts(lines, [0.75, 0.9, 0.95])
    assert [(a.scope, a.level_pct) for a in alerts] == [("key:b", 95.0), ("key:a", 75.0)]
    assert alerts[0].message.startswith("CRITICAL") and alerts[1].message.startswith("WARNING")
    (p, q) = provider_quotas(lines, {"p": 1, "q": 2})
    assert (p.provider, p.amount, p.used, p.keys) == ("p", 2000, 1720, 2)
    assert q.used_pct == 10


def test_exports_carry_the_same_totals() -> None:
    groups = [UsageTotals("a", 2, 2, 0, 10, 20, 30, 0.25), UsageTotals("b", 1, 0, 1, 0, 0, 0, 0.0)]
    rep = build_report(now=0.0, since=None, until=None, group_by="key", groups=groups, quotas=[],
                       priorities={}, alert_levels=[0.75], avg_tokens_per_day=None)  # fmt: skip
    assert json.loads(to_json(rep))["totals"]["total_tokens"] == 30
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert rows[-1]["key"] == "TOTAL" and rows[-1]["attempts"] == "3" and rows[-1]["errors"] == "1"
    total = next(ln for ln in to_text(rep, PARIS).splitlines() if ln.split()[:1] == ["TOTAL"])
    assert total.split()[6] == "30"
    assert format_for("x.CSV") == "csv"
    with pytest.raises(ValueError, match=r"\.txt, \.csv or \.json"):
        format_for("x.xlsx")


def window_line(scope: str, provider: str, window: str, amount: float, used: float) -> QuotaLine:
    return QuotaLine(
        scope, provider, "tokens", window, amount, used, amount - used, 100 * used / amount,
        "ok", 1.0e9 if window == "day" else None,
    )  # fmt: skip


def test_a_provider_with_keys_of_different_windows_shows_each_window() -> None:
    # one key of 200,000 tokens a day and one of 100,000 in all: a tie of one key each,
    # which a pick of one window decided by a set's order (a process's hash seed)
    lines = [
        window_line("key:badkey", "openai", "once", 100_000, 0),
        window_line("key:alpha", "openai", "day", 200_000, 24),
        window_line("key:beta", "openai", "rolling 86400s", 50_000, 0),
        window_line("key:gamma", "openai", "month", 1_000_000, 500),
    ]
    for order in (lines, lines[::-1]):
        rows = provider_quotas(order, {"openai": 1})
        got = [(q.window, q.amount, q.used, q.keys) for q in rows]
        assert got == [
            ("day", 200_000, 24, 1),
            ("month", 1_000_000, 500, 1),
            ("rolling 86400s", 50_000, 0, 1),
            ("once", 100_000, 0, 1),
        ]
    life = lifespan(provider_quotas(lines, {}), 10_000, tokens_per_request=1000)
    assert [p.note for p in life.providers][:1] == ["unlimited (resets daily)"]
    assert life.total_days == pytest.approx((999_500 + 50_000 + 100_000) / 10_000)
