"""Exhaustion versus reset, and pool blackouts."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.windows import Window
from quotaflow.reports.burn import BurnRate
from quotaflow.reports.forecast import PoolMember, forecast_limit, simulate_pool

UTC_TZ = ZoneInfo("UTC")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 3, 11, tzinfo=UTC).timestamp()
DAY = Window("day")


def rate(per_h: float) -> BurnRate:
    return BurnRate(per_h / 3600, 10, 3600, 3600)


def usage(amount: float, used: float, resets_at: float | None, window: Window = DAY) -> LimitUsage:
    return LimitUsage(Limit.make("key:k", "tokens", window, amount), used, 0.0, resets_at)


def test_exhaustion_before_and_after_reset() -> None:
    soon = forecast_limit(usage(10_000, 9_000, MIDNIGHT), "p", rate(1000), NOW)
    assert soon.exhausts_at == pytest.approx(NOW + 3600)
    assert soon.runs_out_before_reset is True
    later = forecast_limit(usage(10_000, 1_000, MIDNIGHT), "p", rate(100), NOW)
    assert later.exhausts_at == pytest.approx(NOW + 90 * 3600)
    assert later.runs_out_before_reset is False
    idle = forecast_limit(usage(10_000, 1_000, MIDNIGHT), "p", rate(0), NOW)
    assert idle.exhausts_at is None and idle.runs_out_before_reset is False
    empty = forecast_limit(usage(10_000, 10_000, MIDNIGHT), "p", rate(0), NOW)
    assert empty.exhausts_at == NOW and empty.runs_out_before_reset is True
    once = forecast_limit(usage(5_000, 0, None, Window("once")), "p", rate(1), NOW)
    assert once.runs_out_before_reset is True  # a one-time credit never resets


def test_pool_blackout_from_empty_to_the_first_reset() -> None:
    members = [PoolMember("a", 600, 1000, DAY, MIDNIGHT), PoolMember("b", 400, 1000, DAY, MIDNIGHT)]
    f = simulate_pool("r", "tokens", members, 1000 / 3600, NOW, UTC_TZ, horizon_s=20 * 3600)
    assert f.exhausts_at == pytest.approx(NOW + 3600)
    assert f.blackouts[0].start == pytest.approx(NOW + 3600)
    assert f.blackouts[0].end == MIDNIGHT
    assert f.blackouts[0].duration_s == pytest.approx(MIDNIGHT - NOW - 3600)
    # refilled at midnight with 2,000, drained at 1,000/h: empty again at 02:00 until the next midnight
    assert len(f.blackouts) == 2
    assert f.blackouts[1].start == pytest.approx(MIDNIGHT + 2 * 3600)
    assert f.blackouts[1].end == MIDNIGHT + 86400


def test_a_reset_before_the_pool_empties_refills_it() -> None:
    # a resets at midnight and lasts; b is a one-time credit: the pool never empties
    members = [
        PoolMember("a", 100, 24_000, DAY, MIDNIGHT),
        PoolMember("b", 20_000, 20_000, Window("once"), None),
    ]
    f = simulate_pool("r", "tokens", members, 1000 / 3600, NOW, UTC_TZ, horizon_s=3 * 86400)
    assert f.blackouts == ()
    assert f.exhausts_at is None


def test_an_unbounded_key_prevents_a_blackout() -> None:
    members = [PoolMember("a", 10, 1000, DAY, MIDNIGHT)]
    f = simulate_pool("r", "tokens", members, 1.0, NOW, UTC_TZ, unbounded=["free"])
    assert f.blackouts == () and f.unbounded_keys == ("free",)


def test_once_quotas_black_out_for_good() -> None:
    members = [PoolMember("a", 3600, 5000, Window("once"), None)]
    f = simulate_pool("r", "tokens", members, 1.0, NOW, UTC_TZ)
    assert f.blackouts[0].start == pytest.approx(NOW + 3600)
    assert f.blackouts[0].end is None


def test_keys_resetting_together_are_played_forward_with_one_reset_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pool plays 35 days on the dashboard's event loop: ten keys of one daily window
    reset at the same instants, so each next reset is computed once, not once per key."""
    import quotaflow.reports.forecast as fc

    calls = []
    real = fc.next_reset

    def counted(at: float, window: Window, tz: ZoneInfo) -> float | None:
        calls.append(at)
        return real(at, window, tz)

    monkeypatch.setattr(fc, "next_reset", counted)
    members = [PoolMember(f"k{i}", 1e9, 1e9, DAY, MIDNIGHT) for i in range(10)]
    f = simulate_pool("r", "tokens", members, 1.0, NOW, UTC_TZ, horizon_s=35 * 86400)
    assert f.blackouts == ()
    assert 30 <= len(calls) <= 36, len(calls)  # one per midnight
    monkeypatch.setattr(fc, "next_reset", real)
    assert simulate_pool("r", "tokens", members, 1.0, NOW, UTC_TZ, horizon_s=35 * 86400) == f
