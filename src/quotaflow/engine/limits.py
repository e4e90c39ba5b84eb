"""Limits, their usage, and seed 000's states.

A :class:`Limit` caps one metric (tokens, requests or cost) over one window for one scope:
a key (``key:<id>``), an agent (``agent:<name>``), a route (``route:<name>``), a provider
(``provider:<name>``) or everything (``global``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from quotaflow.engine.windows import Window
from quotaflow.types import Metric, State

# Seed 000's thresholds, by used share.
WARNING_AT = 0.80
CRITICAL_AT = 0.90


@dataclass(frozen=True, slots=True)
class Limit:
    id: str  # unique, stable: "<scope>/<metric>/<window>"
    scope: str
    metric: Metric
    window: Window
    amount: float
    # Where it came from, for people: "config", "free-plan preset", "env override", …
    source: str = field(default="config", compare=False)

    @staticmethod
    def make(
        scope: str, metric: Metric, window: Window, amount: float, source: str = "config"
    ) -> Limit:
        return Limit(f"{scope}/{metric}/{window}", scope, metric, window, float(amount), source)


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class LimitUsage:
    """One limit's state at an instant: committed use, in-flight reservations, and reset time."""

    limit: Limit
    used: float
    reserved: float
    resets_at: float | None  # None: never (once) or gradually (rolling: see frees_at)
    frees_at: float | None = None  # earliest instant some of it frees (rolling windows, resets)

    @property
    def taken(self) -> float:
        return self.used + self.reserved

    @property
    def remaining(self) -> float:
        return max(self.limit.amount - self.taken, 0.0)

    @property
    def used_share(self) -> float:
        """Share of the limit taken, reservations included (0 … ≥1)."""
        if self.limit.amount <= 0:
            return 1.0
        return self.taken / self.limit.amount

    @property
    def state(self) -> State:
        return state_of(self.used_share)


def state_of(
    used_share: float, warning: float = WARNING_AT, critical: float = CRITICAL_AT
) -> State:
    """OK < warning ≤ WARNING < critical ≤ CRITICAL < 100 % ≤ DEPLETED (seed 000)."""
    if used_share >= 1.0:
        return State.DEPLETED
    if used_share >= critical:
        return State.CRITICAL
    if used_share >= warning:
        return State.WARNING
    return State.OK


def worst_state(usages: Iterable[LimitUsage]) -> State:
    """The state of the fullest limit (OK when there are none)."""
    return state_of(max((u.used_share for u in usages), default=0.0))


def remaining_share(usages: Iterable[LimitUsage]) -> float:
    """The binding (smallest) remaining share across limits; 1.0 when there are none."""
    share = 1.0
    for u in usages:
        if u.limit.amount <= 0:
            return 0.0
        share = min(share, max(1.0 - u.used_share, 0.0))
    return share
