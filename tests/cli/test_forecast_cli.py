"""``quotaflow forecast`` on a synthetic ledger: the analytically expected exhaustion within 1 %."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.cli.conftest import QF, row, write_ledger

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 3, 11, 0, 0, tzinfo=UTC).timestamp()


def provider(name: str, key: str, limit: dict) -> dict:
    return {"name": name, "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": [f"{name}-m"],
            "keys": [{"id": key, "secret": f"secret-{key}-xyz"}], "key_limits": [limit]}  # fmt: skip


@pytest.fixture
def synthetic(qf: QF) -> QF:
    qf.write_config({"providers": [
        provider("credit", "credit-1", {"metric": "tokens", "window": "once", "amount": 1_000_000}),
        provider("daily", "daily-1", {"metric": "tokens", "window": "day", "amount": 10_000}),
    ]})  # fmt: skip
    rows = []
    # credit-1: 500 tokens a minute for the last 24 h → 720,000 used, 280,000 left
    rows += [row(NOW - 60 * k, "credit-1", "credit", 500) for k in range(1, 1441)]
    # daily-1: 1,000 tokens an hour since 03:00 (in 5-minute steps) → 9,000 used today
    rows += [
        row(NOW - 300 * k, "daily-1", "daily", 1000 // 12 + (1 if k % 3 == 0 else 0))
        for k in range(1, 109)
    ]
    write_ledger(qf.home, rows)
    return qf


def test_exhaustion_matches_the_steady_burn_within_1_percent(synthetic: QF) -> None:
    run = synthetic("forecast", "--json", "--now", str(NOW))
    doc = run.json()
    limits = {f["scope"]: f for f in doc["limits"]}
    credit = limits["key:credit-1"]
    assert credit["remaining"] == 280_000
    expected_s = 280_000 / (500 / 60)  # 33,600 s at 500 tokens/min
    assert credit["exhausts_at"] - NOW == pytest.approx(expected_s, rel=0.01)
    assert credit["rate_per_hour"] == pytest.approx(30_000, rel=0.01)
    assert credit["resets_at"] is None and credit["runs_out_before_reset"] is True

    daily = limits["key:daily-1"]
    used = daily["used"]
    rate_h = used / 9  # it burned evenly over 9 hours
    assert daily["exhausts_at"] - NOW == pytest.approx((10_000 - used) / rate_h * 3600, rel=0.01)
    assert daily["resets_at"] == MIDNIGHT
    assert daily["runs_out_before_reset"] is True


def test_blackout_window_until_the_reset_and_exit_code(synthetic: QF) -> None:
    run = synthetic("forecast", "--json", "--now", str(NOW), "--horizon", "0.6")
    assert run.code == 1  # a blackout is ahead
    pools = {p["route"]: p for p in run.json()["pools"]}
    daily = next(p for p in pools.values() if p["keys"] == ["daily-1"])
    first = daily["blackouts"][0]
    assert first["end"] == MIDNIGHT
    assert first["start"] - NOW == pytest.approx(
        daily["remaining"] / daily["rate_per_hour"] * 3600, rel=1e-6
    )
    credit = next(p for p in pools.values() if p["keys"] == ["credit-1"])
    assert credit["blackouts"][0]["end"] is None  # a one-time credit never comes back
    table = synthetic("forecast", "--now", str(NOW), "--horizon", "0.6")
    assert "BLACKOUT" in table.out and "before reset" in table.out


def test_no_burn_no_blackout(qf: QF) -> None:
    qf.write_config(
        {
            "providers": [
                provider("idle", "idle-1", {"metric": "tokens", "window": "month", "amount": 1000})
            ]
        }
    )
    write_ledger(qf.home, [])  # a data folder whose ledger has no use yet
    run = qf("forecast", "--json", "--now", str(NOW))
    assert run.code == 0
    doc = run.json()
    assert doc["limits"][0]["exhausts_at"] is None
    assert doc["pools"][0]["blackouts"] == []


def test_a_quota_that_resets_before_it_would_run_out_says_so_not_a_far_date(qf: QF) -> None:
    """A daily quota burning slowly would run out weeks ahead at this rate, after many resets:
    the table says it lasts until its reset. A pool with a key without a quota is not shown
    with "0 left"."""
    daily = {"metric": "tokens", "window": "day", "amount": 10_000}
    qf.write_config({"providers": [
        provider("slow", "slow-1", daily),
        {"name": "mixed", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1",
         "models": ["mixed-m"], "keys": [{"id": "capped-1", "secret": "secret-capped-xyz",
         "limits": [daily]}, {"id": "open-1", "secret": "secret-open-xyz"}]},
    ]})  # fmt: skip
    rows = [row(NOW - 3600 * k, "slow-1", "slow", 100) for k in range(1, 10)]
    rows += [row(NOW - 3600 * k, "open-1", "mixed", 500) for k in range(1, 10)]
    write_ledger(qf.home, rows)
    doc = qf("forecast", "--json", "--now", str(NOW)).json()
    slow = next(f for f in doc["limits"] if f["scope"] == "key:slow-1")
    assert slow["exhausts_at"] > slow["resets_at"] and not slow["runs_out_before_reset"]
    table = qf("forecast", "--now", str(NOW))
    line = next(ln for ln in table.out.splitlines() if "slow-1" in ln)
    assert "after reset" in line and "2026-03-1" not in line.split("tokens/day")[1][:40]
    pool = next(ln for ln in table.out.splitlines() if "pool" in ln and "mixed" in ln)
    assert "0 tokens left" not in pool and "open-1" in pool
