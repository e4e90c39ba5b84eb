"""Burn rates: how fast a limit is being consumed, weighted toward the recent past.

A naive average (total / elapsed) hides a recent surge; an exponentially weighted rate does
not. Each consumption event of size ``m`` at age ``a`` counts with weight ``e^(-λ·a)``
(``λ = ln 2 / half_life_s``), and the weighted sum is divided by the weighted length of the
observed span::

    rate = Σ mᵢ·e^(-λ·aᵢ)  /  ∫ e^(-λ·a) da   (over the ages the events cover)

so a steady stream of ``r`` units per second gives ``r`` back exactly (up to the graininess
of its events), whatever the half-life, while a change in the last half-life moves the rate
about halfway to the new level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from quotaflow.storage.base import BurnSums

DEFAULT_HALF_LIFE_S = 6 * 3600.0  # the last 6 hours weigh as much as everything before
DEFAULT_LOOKBACK_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class BurnRate:
    """Units per second now, and what it was computed from."""

    per_s: float
    events: int
    span_s: float  # the observed span H the rate is normalised by
    half_life_s: float

    @property
    def per_hour(self) -> float:
        return self.per_s * 3600.0

    @property
    def per_day(self) -> float:
        return self.per_s * 86400.0


def ewma_rate(
    events: Sequence[tuple[float, float]],
    now: float,
    *,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    max_span_s: float | None = None,
) -> BurnRate:
    """The exponentially weighted rate of ``(timestamp, amount)`` events up to ``now``.

    An event marks the end of the consumption it books (one mean gap ``g`` before it), so
    the span the weights are normalised over runs from one gap before the oldest event
    (capped by ``max_span_s``, how far back events were looked for) to the newest one, or
    to ``now`` once the quiet spell since the newest exceeds one gap: a stream that stopped
    slows down, a steady one reads its true rate. Events after ``now`` are ignored.
    """
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    times = sorted(t for t, _ in events if t <= now)
    if not times:
        return BurnRate(0.0, 0, 0.0, half_life_s)
    gap = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    oldest_age = now - times[0] + gap
    if max_span_s is not None:
        oldest_age = min(oldest_age, max_span_s)
    newest_age = min(now - times[-1], gap)  # a quiet spell up to one gap is not a slowdown
    if oldest_age <= newest_age:
        return BurnRate(0.0, len(times), 0.0, half_life_s)
    lam = math.log(2.0) / half_life_s
    # each event books the gap before it: weigh it at that interval's middle
    weighted = sum(m * math.exp(-lam * (now - t + gap / 2)) for t, m in events if t <= now)
    norm = (math.exp(-lam * newest_age) - math.exp(-lam * oldest_age)) / lam
    return BurnRate(weighted / norm, len(times), oldest_age - newest_age, half_life_s)


def ewma_rate_of_sums(
    sums: Sequence[BurnSums],
    metric: str,
    now: float,
    *,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    max_span_s: float | None = None,
) -> BurnRate:
    """:func:`ewma_rate` of the events several :class:`BurnSums` stand for, taken together
    (weighted at ``now`` with ``half_life_s``): the same rate, from a few numbers per scope.
    Each event's weight at its interval's middle, ``e^(-λ·(now - t + g/2))``, is its
    weight at ``t`` times ``e^(-λ·g/2)``, so the sums need not know the gap ``g``."""
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    mine = [s for s in sums if s.events]
    n = sum(s.events for s in mine)
    if not n:
        return BurnRate(0.0, 0, 0.0, half_life_s)
    first = min(s.first for s in mine)
    last = max(s.last for s in mine)
    gap = (last - first) / (n - 1) if n > 1 else 0.0
    oldest_age = now - first + gap
    if max_span_s is not None:
        oldest_age = min(oldest_age, max_span_s)
    newest_age = min(now - last, gap)
    if oldest_age <= newest_age:
        return BurnRate(0.0, n, 0.0, half_life_s)
    lam = math.log(2.0) / half_life_s
    measure = {"tokens": "tokens", "requests": "requests"}.get(metric, "cost")
    weighted = sum(getattr(s, measure) for s in mine) * math.exp(-lam * gap / 2)
    norm = (math.exp(-lam * newest_age) - math.exp(-lam * oldest_age)) / lam
    return BurnRate(weighted / norm, n, oldest_age - newest_age, half_life_s)


def average_rate(events: Sequence[tuple[float, float]], now: float, span_s: float) -> float:
    """The naive rate (everything / span), for comparison in reports."""
    if span_s <= 0:
        return 0.0
    return sum(m for t, m in events if t <= now) / span_s
