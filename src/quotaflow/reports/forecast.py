"""When quotas run out at the recent burn rate, against when they reset.

Per limit: ``exhausts_at = now + remaining / rate`` with the exponentially weighted rate of
:mod:`quotaflow.reports.burn`; it *runs out before its reset* when that instant comes before
the window's next reset (a ``once`` quota never resets).

Per route (the pool of every key that can serve it): the gateway moves traffic to the keys
with headroom, so the pool behaves as one bucket holding the sum of its keys' remaining
quotas, drained at the route's total rate, each key draining in proportion to what it has
left. When a key's window resets, its full amount comes back. A **blackout** is an interval
in which every key of the pool is empty: from the instant the pool empties to the next
reset of any of its keys (or for good, when none resets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from quotaflow.engine.limits import LimitUsage
from quotaflow.engine.windows import Window, next_reset
from quotaflow.reports.burn import BurnRate

DEFAULT_HORIZON_S = 35 * 86400.0
MAX_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class LimitForecast:
    limit_id: str
    scope: str
    provider: str
    metric: str
    window: str
    amount: float
    used: float
    remaining: float
    rate_per_hour: float
    exhausts_at: float | None  # None: not at the current rate (no burn)
    resets_at: float | None  # None: never (a once quota)
    runs_out_before_reset: bool


def forecast_limit(u: LimitUsage, provider: str, rate: BurnRate, now: float) -> LimitForecast:
    """When ``u``'s limit empties at ``rate``, and whether that beats its reset."""
    lim = u.limit
    remaining = u.remaining
    if remaining <= 0:
        exhausts: float | None = now
    elif rate.per_s > 0:
        exhausts = now + remaining / rate.per_s
    else:
        exhausts = None
    before = exhausts is not None and (u.resets_at is None or exhausts < u.resets_at)
    return LimitForecast(
        lim.id,
        lim.scope,
        provider,
        lim.metric,
        str(lim.window),
        lim.amount,
        u.taken,
        remaining,
        rate.per_hour,
        exhausts,
        u.resets_at,
        before,
    )


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One key's quota in a pool: what it has left now, its full amount, its window."""

    key_id: str
    remaining: float
    amount: float
    window: Window
    resets_at: float | None  # next reset; None for once


@dataclass(frozen=True, slots=True)
class Blackout:
    start: float
    end: float | None  # None: nothing ever refills the pool

    @property
    def duration_s(self) -> float:
        return math.inf if self.end is None else self.end - self.start


@dataclass(frozen=True, slots=True)
class PoolForecast:
    route: str
    metric: str
    keys: tuple[str, ...]
    remaining: float
    rate_per_hour: float
    exhausts_at: float | None  # first instant every key is empty; None: not within the horizon
    blackouts: tuple[Blackout, ...]
    unbounded_keys: tuple[str, ...] = ()  # keys without a quota in this metric: never empty


def simulate_pool(
    route: str,
    metric: str,
    members: Sequence[PoolMember],
    rate_per_s: float,
    now: float,
    tz: ZoneInfo,
    *,
    horizon_s: float = DEFAULT_HORIZON_S,
    unbounded: Sequence[str] = (),
) -> PoolForecast:
    """Play the pool forward from ``now`` to ``now + horizon_s`` (see the module docstring)."""
    keys = tuple(m.key_id for m in members) + tuple(unbounded)
    left = {m.key_id: max(m.remaining, 0.0) for m in members}
    total_now = sum(left.values())
    if unbounded or not members or rate_per_s <= 0:
        return PoolForecast(
            route, metric, keys, total_now, rate_per_s * 3600, None, (), tuple(unbounded)
        )
    resets = {m.key_id: m.resets_at for m in members}
    by_id = {m.key_id: m for m in members}
    end = now + horizon_s
    t = now
    first_empty: float | None = None
    blackouts: list[Blackout] = []
    following: dict[tuple[float, Window], float | None] = {}
    for _ in range(MAX_EVENTS):
        pool = sum(left.values())
        t_next = min((r for r in resets.values() if r is not None), default=None)
        t_empty = t + pool / rate_per_s
        if t_next is None or t_empty < t_next:
            if t_empty >= end:
                break
            first_empty = t_empty if first_empty is None else first_empty
            blackouts.append(Blackout(t_empty, t_next))
            if t_next is None or t_next >= end:
                break
            left = dict.fromkeys(left, 0.0)
        else:
            if t_next >= end:
                break
            keep = 1.0 - rate_per_s * (t_next - t) / pool if pool > 0 else 0.0
            left = {k: v * max(keep, 0.0) for k, v in left.items()}
        t = t_next
        for k, r in resets.items():
            if r is not None and r <= t:
                left[k] = by_id[k].amount
                w = by_id[k].window
                if (r, w) not in following:  # keys of one window reset together: once
                    following[r, w] = next_reset(r, w, tz)
                resets[k] = following[r, w]
    return PoolForecast(
        route, metric, keys, total_now, rate_per_s * 3600, first_empty, tuple(blackouts)
    )
