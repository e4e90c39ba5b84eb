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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.reservation import Claim, fits
from quotaflow.engine.windows import next_reset, window_start
from quotaflow.storage.base import ReserveOutcome
from quotaflow.types import Measure


@dataclass(slots=True)
class _Bucket:
    limit: Limit
    start: float = float("nan")  # start of the current calendar window
    end: float | None = None
    used: float = 0.0
    reserved: float = 0.0
    events: list[tuple[float, float]] = field(default_factory=list)  # rolling: (t, amount), sorted


@dataclass(slots=True)
class _Held:
    bucket: _Bucket
    amount: float
    start: float  # window the claim was booked in


@dataclass(slots=True)
class _Reservation:
    held: list[_Held]
    at: float


class MemoryCounterStore:
    """Counters for one process. ``tz`` is the zone calendar windows reset in."""

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._buckets: dict[str, _Bucket] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._expiry: list[tuple[float, str]] = []
        self._ids = itertools.count(1)

    # -- internals ---------------------------------------------------------------------
    def _bucket(self, limit: Limit, now: float) -> _Bucket:
        b = self._buckets.get(limit.id)
        if b is None:
            b = _Bucket(limit)
            self._buckets[limit.id] = b
        elif b.limit is not limit and b.limit != limit:
            # Same id, new amount (an edited limit): the window's use and holds still count.
            b.limit = limit
        self._roll(b, now)
        return b

    def _roll(self, b: _Bucket, now: float) -> None:
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
        if b.end is not None and b.start <= now < b.end:
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
        for h in r.held:
            b = h.bucket
            if b.limit.window.kind == "rolling" or b.start == h.start:
                b.reserved = max(b.reserved - h.amount, 0.0)
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
        buckets = [self._bucket(c.limit, now) for c in claims]
        short = fits(claims, {b.limit.id: self._usage(b) for b in buckets})
        if short is not None:
            return ReserveOutcome(None, short)
        held = []
        for c, b in zip(claims, buckets, strict=True):
            b.reserved += c.amount
            held.append(_Held(b, c.amount, b.start))
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
        for h in r.held:
            b = h.bucket
            self._roll(b, now)
            self._commit(b, actual.of(b.limit.metric), r.at, h.start, now)
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

    def snapshot_now(self, limits: Collection[Limit], now: float) -> dict[str, LimitUsage]:
        if self._expiry:
            self._sweep(now)
        return {lim.id: self._usage(self._bucket(lim, now)) for lim in limits}

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

    def reservation_count(self) -> int:
        return len(self._reservations)
