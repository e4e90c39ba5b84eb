"""The ledger is the truth: what each limit's current window holds according to it, and
whether shared counters agree.

Used by the Redis counters (reload after Redis lost its data), by ``quotaflow
rebuild-counters`` and by the start-up agreement check of a replica.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.windows import window_start
from quotaflow.errors import Unavailable
from quotaflow.storage.ledger import Ledger
from quotaflow.types import Measure

_TOLERANCE = 1e-6
log = logging.getLogger("quotaflow.storage.counters.rebuild")


@dataclass(frozen=True, slots=True)
class LedgerSource:
    """Where counters come from: a ledger, and the limits in force (they change at runtime):
    the configured ones, and those adopted later (agents' budgets, keys added at runtime)."""

    ledger: Ledger
    limits: Callable[[], list[Limit]]
    extra: dict[str, Limit] = field(default_factory=dict)

    def all(self) -> list[Limit]:
        out = {lim.id: lim for lim in self.limits()}
        out.update(self.extra)
        return list(out.values())


def _since(lim: Limit, now: float, tz: ZoneInfo) -> float:
    start = window_start(now, lim.window, tz)
    return 0.0 if math.isinf(start) else start


async def ledger_window(
    ledger: Ledger, lim: Limit, now: float, tz: ZoneInfo
) -> tuple[Measure, list[tuple[float, Measure]]]:
    """What the ledger says a limit's current window consumed: the total and, for a rolling
    window, the events. Rows still pending count at their reserved worst case."""
    since = _since(lim, now, tz)
    pending = await ledger.pending_scope(lim.scope, since)
    if lim.window.kind == "rolling":
        events = sorted([*await ledger.events_scope(lim.scope, since), *pending])
        return _sum(m for _, m in events), events
    done: Measure = await ledger.sum_scope(lim.scope, since)
    return _sum([done, *(m for _, m in pending)]), []


def _sum(measures: Any) -> Measure:
    t = r = c = 0.0
    for m in measures:
        t += m.tokens
        r += m.requests
        c += m.cost
    return Measure(t, r, c)


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A limit whose counter and ledger disagree beyond what is in flight."""

    limit_id: str
    counted: float  # used + reserved in the counters
    ledger_done: float  # finished ledger rows
    ledger_pending: float  # pending rows at their worst case

    @property
    def under(self) -> bool:
        """True when the counters hold less than the ledger: a quota could be overshot."""
        return self.counted < self.ledger_done - _TOLERANCE

    def describe(self) -> str:
        what = "under-counts" if self.under else "over-counts"
        return (
            f"{self.limit_id}: counters {what} (counters {self.counted:g}, ledger "
            f"{self.ledger_done:g} settled + {self.ledger_pending:g} in flight)"
        )


async def check_agreement(
    usages: Mapping[str, LimitUsage],
    ledger: Ledger,
    limits: Collection[Limit],
    now: float,
    tz: ZoneInfo,
) -> list[Disagreement]:
    """Limits whose counters disagree with the ledger beyond in-flight reservations.

    The counters agree when ``settled ≤ used + reserved`` and ``used ≤ settled + pending
    worst case``: an attempt in flight is booked as a hold (or already settled in the
    counters and not yet in the ledger), so only a counter below what the ledger settled, or
    above everything the ledger knows, is a disagreement.
    """
    out: list[Disagreement] = []
    for lim in limits:
        u = usages.get(lim.id)
        if u is None:
            continue
        since = _since(lim, now, tz)
        if lim.window.kind == "rolling":
            done = _sum(m for _, m in await ledger.events_scope(lim.scope, since))
        else:
            done = await ledger.sum_scope(lim.scope, since)
        pend = _sum(m for _, m in await ledger.pending_scope(lim.scope, since))
        d, p = done.of(lim.metric), pend.of(lim.metric)
        counted = u.used + u.reserved
        if counted < d - _TOLERANCE or u.used > d + p + _TOLERANCE:
            out.append(Disagreement(lim.id, counted, d, p))
    return out


async def attach_shared(
    counters: Any, ledger: Ledger, limits: Callable[[], list[Limit]], now: float, tz: ZoneInfo
) -> list[Disagreement]:
    """Start-up of a replica on shared counters: load them from the ledger if they are empty
    (never re-add the ledger to counters other replicas keep), then check they agree with it.

    Disagreements are logged and, when the ledger keeps alerts, recorded as an alert; they
    are fixed by ``quotaflow rebuild-counters``.
    """
    await counters.attach(LedgerSource(ledger, limits))
    current = limits()
    try:
        usages = await counters.snapshot(current, now) if counters.available else None
    except Unavailable:  # lost again since attach: recovery reloads them
        usages = None
    if usages is None:
        log.warning(
            "shared counters unavailable at start: requests fail closed until they are back"
        )
        return []
    found = await check_agreement(usages, ledger, current, now, tz)
    for d in found:
        log.warning("counters disagree with the ledger: %s", d.describe())
    if found:
        from quotaflow.storage.management import AlertRow

        under = [d for d in found if d.under]
        msg = (
            f"{len(found)} limit(s) disagree with the ledger ({len(under)} under-counted): "
            + "; ".join(d.describe() for d in found[:5])
            + " — run `quotaflow rebuild-counters`"
        )
        await ledger.add_alert(AlertRow(now, "counters", "counters", "error", msg[:1000]), None)
    return found
