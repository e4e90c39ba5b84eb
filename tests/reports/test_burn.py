"""The exponentially weighted burn rate."""

from __future__ import annotations

import pytest

from quotaflow.reports.burn import average_rate, ewma_rate


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
