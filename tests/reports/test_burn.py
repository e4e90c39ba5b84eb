"""The exponentially weighted burn rate."""

from __future__ import annotations

import math
import random

import pytest

from quotaflow.reports.burn import average_rate, ewma_rate, ewma_rate_of_sums
from quotaflow.storage.base import BurnSums


def steady(
    rate_per_s: float, every_s: float, n: int, end: float = 0.0
) -> list[tuple[float, float]]:
    return [(end - every_s * k, rate_per_s * every_s) for k in range(n)]


@pytest.mark.parametrize(("every_s", "half_life_s"), [(60, 3600), (300, 6 * 3600), (10, 600)])
def test_a_steady_stream_reads_its_true_rate(every_s: float, half_life_s: float) -> None:
    r = ewma_rate(steady(2.5, every_s, 2000), 0.0, half_life_s=half_life_s)
    assert r.per_s == pytest.approx(2.5, rel=0.005)


def test_a_recent_surge_moves_the_rate_more_than_the_average() -> None:
    old = steady(1.0, 60, 20 * 60, end=-2 * 3600)  # 1/s for 20 h …
    new = steady(4.0, 60, 2 * 60)  # … then 4/s for the last 2 h
    events = old + new
    ewma = ewma_rate(events, 0.0, half_life_s=2 * 3600).per_s
    naive = average_rate(events, 0.0, 22 * 3600)
    assert naive == pytest.approx((20 * 1 + 2 * 4) / 22, rel=0.01)
    assert ewma > 2.0 > naive  # the last half-life weighs as much as all before


def test_a_stream_that_stopped_slows_down_and_none_is_zero() -> None:
    events = steady(1.0, 60, 600, end=-3 * 3600)
    assert ewma_rate(events, 0.0, half_life_s=3600).per_s < 0.25
    assert ewma_rate([], 0.0).per_s == 0.0
    assert ewma_rate([(10.0, 5.0)], 0.0).per_s == 0.0  # only future events
    with pytest.raises(ValueError, match="half_life_s"):
        ewma_rate(events, 0.0, half_life_s=0)


def test_lookback_caps_the_span() -> None:
    events = steady(1.0, 60, 600)
    full = ewma_rate(events, 0.0, half_life_s=3600)
    capped = ewma_rate([e for e in events if e[0] > -1800], 0.0, half_life_s=3600, max_span_s=1800)
    assert capped.per_s == pytest.approx(full.per_s, rel=0.02)
    assert capped.span_s <= 1800


def sums(events: list[tuple[float, float]], now: float, half_life_s: float) -> BurnSums:
    """What a ledger's ``burn_sums_of_keys`` holds for these events (in ``tokens``)."""
    lam = math.log(2.0) / half_life_s
    if not events:
        return BurnSums()
    return BurnSums(
        len(events),
        min(t for t, _ in events),
        max(t for t, _ in events),
        tokens=sum(m * math.exp(-lam * (now - t)) for t, m in events),
    )


@pytest.mark.parametrize("half_life_s", [600.0, 6 * 3600.0])
def test_the_rate_of_summed_scopes_is_the_rate_of_their_events_together(
    half_life_s: float,
) -> None:
    rnd = random.Random(3)
    scopes = [
        sorted((-rnd.uniform(0, 7 * 86400), rnd.uniform(0, 900)) for _ in range(n))
        for n in (0, 1, 2, 300, 2000)
    ]
    scopes.append(steady(1.0, 60, 600, end=-3 * 3600))  # a stream that stopped
    for pick in ([4], [1], [1, 2], [0, 3, 4, 5], list(range(6)), [0]):
        events = sorted(e for i in pick for e in scopes[i])
        want = ewma_rate(events, 0.0, half_life_s=half_life_s, max_span_s=7 * 86400)
        got = ewma_rate_of_sums(
            [sums(scopes[i], 0.0, half_life_s) for i in pick],
            "tokens",
            0.0,
            half_life_s=half_life_s,
            max_span_s=7 * 86400,
        )
        assert got.per_s == pytest.approx(want.per_s, rel=1e-9, abs=1e-15), pick
        assert (got.events, got.span_s) == (want.events, pytest.approx(want.span_s)), pick
    with pytest.raises(ValueError, match="half_life_s"):
        ewma_rate_of_sums([], "tokens", 0.0, half_life_s=0)
