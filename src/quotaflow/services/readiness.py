"""The gateway's one status: which keys can take a request now, and so whether the gateway
can serve. ``/api/health``, ``/livez``, ``/readyz``, the ``health`` of ``/api/status`` (and
``quotaflow status``), the dashboard's Health tile and the floor of the emergency status all
read it, so that they cannot contradict each other.

A key cannot serve when it is disabled (by an operator), invalid (rejected by its provider),
cooling down (rate limited, its circuit open), out of quota at the provider, or when a limit
of its own (or of its provider) is taken up in the counters. The level is ``ok`` when every
key can serve, ``warning`` when some cannot and ``critical`` when none can. The store is what
every request needs: the counters (Redis when shared) and the ledger; while either is
unreachable nothing can be served, so the gateway is critical whatever its keys say.

An agent at its own budget is not a gateway matter: its requests are refused, everyone
else's are served. The surfaces that report agents (the emergency status's budgets, the
dashboard's agents) say so on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key
from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.words import plural
from quotaflow.errors import Unavailable
from quotaflow.gateway import Gateway

# Why a key cannot serve, most lasting first (the order the counts are told in).
DISABLED, INVALID, COOLING, DEPLETED = "disabled", "invalid", "cooling", "depleted"
KINDS = (DISABLED, INVALID, COOLING, DEPLETED)
KIND_WORDS = {
    DISABLED: "disabled",
    INVALID: "rejected by the provider",
    COOLING: "cooling down",
    DEPLETED: "out of quota",
}
LEVELS = ("ok", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Block:
    """Why one key cannot take a request now: one of :data:`KINDS`, and in words."""

    kind: str
    reason: str


def limits_of(gw: Gateway, key: Key) -> list[Limit]:
    """The key's own limits and its provider's."""
    provider = gw.config.providers.get(key.provider)
    return [*key.limits, *(provider.limits if provider is not None else ())]


def key_block(gw: Gateway, key: Key, usages: Mapping[str, LimitUsage], now: float) -> Block | None:
    """Why ``key`` cannot take a request now (``usages`` must hold its limits), or ``None``."""
    if not key.enabled:
        return Block(DISABLED, "disabled by an operator")
    health = gw.health.get(key.id)
    if health is not None:
        block = _health_block(health, now)
        if block is not None:
            return block
    for lim in limits_of(gw, key):
        u = usages.get(lim.id)
        if u is not None and u.remaining <= 0:
            if u.used >= lim.amount:
                return Block(DEPLETED, f"quota used up ({lim.id})")
            return Block(DEPLETED, f"quota held by requests in flight ({lim.id})")
    return None


def _health_block(health: hl.Health, now: float) -> Block | None:
    reason = health.disabled_reason
    if reason:
        if hl.is_invalid(health):
            return Block(INVALID, reason)
        return Block(DISABLED, reason if reason.startswith("disabled") else f"disabled: {reason}")
    why = hl.unavailable_reason(health, now)  # also ends a provider depletion that is over
    if why is None:
        return None
    depleted = health.depleted_until is not None and now < health.depleted_until
    return Block(DEPLETED if depleted else COOLING, why)


@dataclass(frozen=True, slots=True)
class Readiness:
    """A snapshot of what the gateway can serve: the one status."""

    keys: int
    unusable: dict[str, Block] = field(default_factory=dict)  # key id -> why it cannot serve
    store_error: str | None = None  # why the store is unreachable, when it is

    @property
    def usable(self) -> int:
        return self.keys - len(self.unusable)

    @property
    def ready(self) -> bool:
        """A request could be served now: the store answers and at least one key can."""
        return self.store_error is None and self.usable > 0

    @property
    def level(self) -> str:
        """``critical`` when nothing can be served, ``warning`` when some keys cannot."""
        if not self.ready:
            return "critical"
        return "warning" if self.unusable else "ok"

    @property
    def status(self) -> str:
        """``/api/health``'s words for the level: healthy, warning or critical."""
        return "healthy" if self.level == "ok" else self.level

    def count(self, kind: str) -> int:
        return sum(1 for b in self.unusable.values() if b.kind == kind)

    def why(self) -> str:
        """The keys that cannot serve, counted by kind: ``1 disabled, 2 out of quota``."""
        counts = ((self.count(kind), KIND_WORDS[kind]) for kind in KINDS)
        return ", ".join(f"{n} {words}" for n, words in counts if n)

    def message(self) -> str:
        if self.store_error is not None:
            return f"The store is unreachable: {self.store_error}"
        if self.keys == 0:
            return "No keys configured: add a key"
        if not self.unusable:
            return "The key can serve" if self.keys == 1 else f"All {self.keys} keys can serve"
        if not self.usable:
            return f"No key can serve ({self.why()})"
        return f"{self.usable} of {plural(self.keys, 'key')} can serve ({self.why()})"


async def readiness(gw: Gateway) -> Readiness:
    """What the gateway can serve now (reads the counters, and pings the ledger)."""
    now = gw.clock.now()
    keys = list(gw.keys.values())
    limits = {lim.id: lim for key in keys for lim in limits_of(gw, key)}
    try:
        usages = await gw.counters.snapshot(list(limits.values()), now) if limits else {}
        await gw.ledger.ping()  # an unreachable ledger raises Unavailable, as requests would
    except Unavailable as exc:
        blocks = {k.id: b for k in keys if (b := key_block(gw, k, {}, now)) is not None}
        return Readiness(len(keys), blocks, exc.message)
    blocks = {k.id: b for k in keys if (b := key_block(gw, k, usages, now)) is not None}
    return Readiness(len(keys), blocks)
