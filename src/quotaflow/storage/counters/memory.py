"""In-memory counters of the embedded mode.

All operations run on the event loop's thread without awaiting in between, so each
reserve / settle / release is atomic with respect to every other request: the check of
every claim and the booking of all of them happen in one step. The counters are rebuilt
from the ledger at start.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.reservation import EPS, Claim, Shortfall
from quotaflow.engine.windows import next_reset, window_start
from quotaflow.storage.base import LedgerStore, ReserveOutcome
from quotaflow.types import Measure


@dataclass(slots=True)
class _Bucket:
    limit: Limit
    start: float = float("nan")  # start of the current calendar window
    end: float | None = None
    used: float = 0.0
    reserved: float = 0.0
    events: list[tuple[float, float]] = field(default_factory=list)  # rolling: (t, amount), sorted


# One claim of a reservation: (bucket, amount, start of the window it was booked in).
_Held = tuple[_Bucket, float, float]


@dataclass(slots=True)
class _Reservation:
    held: list[_Held]
    at: float


class MemoryCounterStore:
    """Counters for one process. ``tz`` is the zone calendar windows reset in."""

    shared = False  # this process's alone

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._buckets: dict[str, _Bucket] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._expiry: list[tuple[float, str]] = []
        self._ids = itertools.count(1)

    # -- internals ---------------------------------------------------------------------
    def _bucket(self, limit: Limit, now: float) -> _Bucket:
        b = self._buckets.get(limit.id)
        if b is not None and b.limit is limit:
            end = b.end
            if end is not None and b.start <= now < end:
                return b  # a calendar window still current (the common case)
        if b is None:
            b = _Bucket(limit)
            self._buckets[limit.id] = b
        elif b.limit is not limit and b.limit != limit:
            # Same id, new amount (an edited limit): the window's use and holds still count.
            b.limit = limit
        self._roll(b, now)
        return b

    def _roll(self, b: _Bucket, now: float) -> None:
        end = b.end
        if end is not None and b.start <= now < end:
            return  # a calendar window still current (only those have an end)
        w = b.limit.window
        if w.kind == "rolling":
            edge = now - w.seconds
            ev = b.events
            if ev and ev[0][0] <= edge:
                i = bisect.bisect_right(ev, (edge, float("inf")))
                b.used -= sum(a for _, a in ev[:i])
                del ev[:i]
                if not ev:
                    b.used = 0.0
            return
        if w.kind == "once":
            if b.start != b.start:  # nan: first use
                b.start = float("-inf")
            return
        b.start = window_start(now, w, self._tz)
        b.end = next_reset(now, w, self._tz)
        b.used = 0.0
        b.reserved = 0.0  # reservations of the old window settle into the old window

    def _usage(self, b: _Bucket) -> LimitUsage:
        w = b.limit.window
        if w.kind == "rolling":
            frees = b.events[0][0] + w.seconds if b.events else None
            return LimitUsage(b.limit, b.used, b.reserved, None, frees)
        return LimitUsage(b.limit, b.used, b.reserved, b.end, b.end)

    def _sweep(self, now: float) -> None:
        exp = self._expiry
        while exp and exp[0][0] <= now:
            _, rid = heapq.heappop(exp)
            self._drop(rid)

    def _drop(self, rid: str) -> _Reservation | None:
        r = self._reservations.pop(rid, None)
        if r is None:
            return None
        for b, amount, start in r.held:
            if b.start == start or b.limit.window.kind == "rolling":
                b.reserved = max(b.reserved - amount, 0.0)
        return r

    # -- CounterStore --------------------------------------------------------------------
    async def reserve(
        self, claims: Sequence[Claim], now: float, ttl_s: float | None = None
    ) -> ReserveOutcome:
        return self.reserve_now(claims, now, ttl_s)

    def reserve_now(
        self, claims: Sequence[Claim], now: float, ttl_s: float | None = None
    ) -> ReserveOutcome:
        """Synchronous form of :meth:`reserve` (the embedded gateway's hot path)."""
        if self._expiry:
            self._sweep(now)
        # Every claim is checked before any is booked: all or nothing (as reservation.fits).
        buckets: list[_Bucket] = []
        get = self._buckets.get
        for c in claims:
            lim = c.limit
            b = get(lim.id)
            if b is None or b.limit is not lim or b.end is None or not b.start <= now < b.end:
                b = self._bucket(lim, now)  # new, edited or not a current calendar window
            taken = b.used + b.reserved
            if taken + c.amount > lim.amount + EPS:
                frees = self._usage(b).frees_at
                return ReserveOutcome(None, Shortfall(lim, taken, c.amount, frees))
            buckets.append(b)
        held: list[_Held] = []
        for c, b in zip(claims, buckets, strict=True):
            b.reserved += c.amount
            held.append((b, c.amount, b.start))
        rid = f"r{next(self._ids)}"
        self._reservations[rid] = _Reservation(held, now)
        if ttl_s is not None:
            heapq.heappush(self._expiry, (now + ttl_s, rid))
        return ReserveOutcome(rid)

    async def settle(self, reservation_id: str, actual: Measure, now: float) -> None:
        self.settle_now(reservation_id, actual, now)

    def settle_now(self, reservation_id: str, actual: Measure, now: float) -> bool:
        """Commit ``actual`` where the reservation was booked; False if it had expired."""
        r = self._drop(reservation_id)
        if r is None:
            return False
        at = r.at
        for b, _, start in r.held:
            end = b.end
            if end is not None and b.start <= now < end:
                # A calendar window still current (the common case): nothing to roll, and the
                # use counts if the claim was booked in this window (as _commit does).
                if b.start == start:
                    amount = actual.of(b.limit.metric)
                    if amount > 0:
                        b.used += amount
                continue
            self._roll(b, now)
            self._commit(b, actual.of(b.limit.metric), at, start, now)
        return True

    def _commit(self, b: _Bucket, amount: float, at: float, start: float, now: float) -> None:
        if amount <= 0:
            return
        if b.limit.window.kind == "rolling":
            if at > now - b.limit.window.seconds:
                bisect.insort(b.events, (at, amount))
                b.used += amount
            return
        if b.start == start:
            b.used += amount

    async def release(self, reservation_id: str) -> None:
        self._drop(reservation_id)

    async def snapshot(self, limits: Collection[Limit], now: float) -> dict[str, LimitUsage]:
        return self.snapshot_now(limits, now)

    def recent(self, limits: Collection[Limit], now: float) -> None:
        """No view to keep: a snapshot here is exact and as cheap."""
        return None

    def snapshot_now(self, limits: Collection[Limit], now: float) -> dict[str, LimitUsage]:
        if self._expiry:
            self._sweep(now)
        buckets = self._buckets
        out: dict[str, LimitUsage] = {}
        for lim in limits:
            b = buckets.get(lim.id)
            if b is not None and b.limit is lim and b.end is not None and b.start <= now < b.end:
                # A calendar window still current: nothing to roll (the common case).
                out[lim.id] = LimitUsage(lim, b.used, b.reserved, b.end, b.end)
            else:
                out[lim.id] = self._usage(self._bucket(lim, now))
        return out

    async def reset(self, limits: Collection[Limit], now: float) -> None:
        for lim in limits:
            b = self._bucket(lim, now)
            b.used = 0.0
            b.events.clear()

    async def charge(
        self, limits: Collection[Limit], actual: Measure, at: float, now: float
    ) -> None:
        self.charge_now(limits, actual, at, now)

    def charge_now(self, limits: Collection[Limit], actual: Measure, at: float, now: float) -> None:
        for lim in limits:
            b = self._bucket(lim, now)
            w = lim.window
            if w.kind in ("rolling", "once"):
                self._commit(b, actual.of(lim.metric), at, b.start, now)
            elif b.start <= at < (b.end if b.end is not None else float("inf")):
                b.used += actual.of(lim.metric)

    async def adopt(self, limits: Collection[Limit], ledger: LedgerStore, now: float) -> None:
        """Count each limit's current window from the ledger (the source of truth)."""
        for lim in limits:
            start = window_start(now, lim.window, self._tz)
            since = 0.0 if math.isinf(start) else start
            if lim.window.kind == "rolling":
                events = await ledger.events_scope(lim.scope, since)
                b = self._bucket(lim, now)  # one window: each event is one _commit
                for at, m in events:
                    self._commit(b, m.of(lim.metric), at, b.start, now)
            else:
                self.charge_now([lim], await ledger.sum_scope(lim.scope, since), now, now)

    def forget(self, limits: Collection[Limit]) -> None:
        """Drop the buckets of ``limits``: a reservation still open on one settles into the
        bucket it holds, which nothing reads any more."""
        for lim in limits:
            self._buckets.pop(lim.id, None)

    async def close(self) -> None:
        """Nothing to close: the counters live in this process."""

    def reservation_count(self) -> int:
        return len(self._reservations)
