"""Whether the gateway could serve a request now, and how many keys could: what
``/api/health``, ``/livez`` and ``/readyz`` report.

A key cannot serve when it is disabled (by an operator, or rejected by its provider as
invalid), cooling down, out of quota at the provider, or when a limit of its own (or of its
provider) is used up in the counters. The store is what every request needs: the counters
(Redis when shared) and the ledger; while either is unreachable nothing can be served, so
the gateway is not ready whatever its keys say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key
from quotaflow.engine.limits import Limit
from quotaflow.engine.words import plural
from quotaflow.errors import Unavailable
from quotaflow.gateway import Gateway


@dataclass(frozen=True, slots=True)
class Readiness:
    """A snapshot of what the gateway can serve."""

    keys: int
    unusable: dict[str, str] = field(default_factory=dict)  # key id -> why it cannot serve
    store_error: str | None = None  # why the store is unreachable, when it is

    @property
    def usable(self) -> int:
        return self.keys - len(self.unusable)

    @property
    def ready(self) -> bool:
        """A request could be served now: the store answers and at least one key can."""
        return self.store_error is None and self.usable > 0

    @property
    def status(self) -> str:
        """``critical`` when nothing can be served, ``warning`` when some keys cannot."""
        if not self.ready:
            return "critical"
        return "warning" if self.unusable else "healthy"

    def message(self) -> str:
        if self.store_error is not None:
            return f"the store is unreachable: {self.store_error}"
        if self.keys == 0:
            return "no keys configured: add a key"
        if not self.unusable:
            return "the key can serve" if self.keys == 1 else f"all {self.keys} keys can serve"
        return f"{self.usable} of {plural(self.keys, 'key')} can serve"


def _limits_of(gw: Gateway, key: Key) -> list[Limit]:
    provider = gw.config.providers.get(key.provider)
    return [*key.limits, *(provider.limits if provider is not None else ())]


def _health_reason(gw: Gateway, key: Key, now: float) -> str | None:
    if not key.enabled:
        return "disabled"
    health = gw.health.get(key.id)
    return None if health is None else hl.unavailable_reason(health, now)


async def readiness(gw: Gateway) -> Readiness:
    """What the gateway can serve now (reads the counters, and pings the ledger)."""
    now = gw.clock.now()
    keys = list(gw.keys.values())
    unusable: dict[str, str] = {}
    for key in keys:
        why = _health_reason(gw, key, now)
        if why is not None:
            unusable[key.id] = why
    limits = {lim.id: lim for key in keys for lim in _limits_of(gw, key)}
    try:
        usages = await gw.counters.snapshot(list(limits.values()), now) if limits else {}
        await gw.ledger.ping()  # an unreachable ledger raises Unavailable, as requests would
    except Unavailable as exc:
        return Readiness(len(keys), unusable, exc.message)
    for key in keys:
        full = [
            lim
            for lim in _limits_of(gw, key)
            if lim.id in usages and usages[lim.id].used >= lim.amount
        ]
        if key.id not in unusable and full:
            unusable[key.id] = f"depleted ({full[0].id})"
    return Readiness(len(keys), unusable)
