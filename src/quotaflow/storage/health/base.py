"""Key health shared by replicas: the store's protocol and the merge rule.

A replica publishes a key's *blocking* state (disabled, cool-down, provider-side depletion,
open circuit) when it changes it; every replica merges what the others published into its
local :class:`~quotaflow.engine.health.Health`, taking the stricter of both: the later
``cooldown_until`` / ``depleted_until``, a disabled reason set anywhere, an open circuit whose
cool-down still runs. Clearing is explicit: a *reset* (``enable``: an operator's enable clears
every block; ``replenish``: a provider reset clears the depletion) bumps a per-key generation
that every replica applies once, before merging the fields.

Fields travel as strings: ``""`` means "not set"; times are ``repr(float)`` (``"inf"`` too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from quotaflow.engine import health as hl

ResetKind = Literal["enable", "replenish"]
RESET_KINDS: tuple[ResetKind, ...] = ("enable", "replenish")
FIELDS = (
    "disabled_reason",
    "cooldown_until",
    "cooldown_reason",
    "depleted_until",
    "circuit",
    "open_count",
)


class HealthStore(Protocol):
    """Where replicas share key health (Redis: :mod:`quotaflow.storage.health.redis`)."""

    async def publish(self, key_id: str, fields: Mapping[str, str]) -> None:
        """Merge ``fields`` (a subset of :data:`FIELDS`) into the key's shared state, stricter wins."""

    async def reset(self, key_id: str, kind: ResetKind) -> int:
        """Clear what ``kind`` clears everywhere; returns the key's new generation of ``kind``."""

    async def changes(self, since: int | None) -> tuple[int, dict[str, dict[str, str]]] | None:
        """``None`` if nothing changed since version ``since``, else the new version and every
        key's shared state (:data:`FIELDS` plus ``<kind>_gen`` per reset kind)."""

    async def close(self) -> None: ...


def _f(v: str | None) -> float | None:
    return float(v) if v else None


def blocking_fields(h: hl.Health) -> dict[str, str]:
    """The key's blocking state as the store keeps it."""
    return {
        "disabled_reason": h.disabled_reason or "",
        "cooldown_until": repr(h.cooldown_until) if h.cooldown_until else "",
        "cooldown_reason": (h.cooldown_reason or "") if h.cooldown_until else "",
        "depleted_until": "" if h.depleted_until is None else repr(h.depleted_until),
        "circuit": "open" if h.circuit == "open" else "",
        "open_count": str(h.open_count) if h.circuit == "open" else "",
    }


def stricter_fields(local: Mapping[str, str], known: Mapping[str, str]) -> dict[str, str]:
    """The part of ``local`` that is stricter than what the store is ``known`` to hold: what a
    replica publishes (so a block learnt from the others, or since cleared by a reset
    elsewhere, is never echoed back)."""
    out: dict[str, str] = {}
    if local.get("disabled_reason") and not known.get("disabled_reason"):
        out["disabled_reason"] = local["disabled_reason"]
    cu = _f(local.get("cooldown_until"))
    if cu is not None and cu > (_f(known.get("cooldown_until")) or 0.0):
        out["cooldown_until"] = local["cooldown_until"]
        out["cooldown_reason"] = local.get("cooldown_reason", "")
    du, kdu = _f(local.get("depleted_until")), _f(known.get("depleted_until"))
    if du is not None and (kdu is None or du > kdu):
        out["depleted_until"] = local["depleted_until"]
    if local.get("circuit") == "open" and int(local.get("open_count") or 0) > int(
        known.get("open_count") or 0
    ):
        out["circuit"] = "open"
        out["open_count"] = local["open_count"]
    return out


def merge(h: hl.Health, remote: Mapping[str, str], now: float) -> bool:
    """Merge the shared state ``remote`` into ``h``, the stricter of both winning; True if
    ``h`` changed. Never clears anything (clearing is a reset: :func:`apply_reset`)."""
    changed = False
    reason = remote.get("disabled_reason")
    if reason and not h.disabled_reason:
        h.disabled_reason = reason
        changed = True
    cu = _f(remote.get("cooldown_until"))
    if cu is not None and cu > h.cooldown_until:
        h.cooldown_until = cu
        h.cooldown_reason = remote.get("cooldown_reason") or "cooling down on another replica"
        changed = True
    du = _f(remote.get("depleted_until"))
    if du is not None and (h.depleted_until is None or du > h.depleted_until):
        h.depleted_until = du
        changed = True
    if remote.get("circuit") == "open" and cu is not None and cu > now:
        opened = int(remote.get("open_count") or 0)
        if h.circuit != "open" or opened > h.open_count:
            h.circuit = "open"
            h.open_count = max(h.open_count, opened)
            changed = True
    return changed


def apply_reset(h: hl.Health, kind: ResetKind) -> None:
    """What a reset made on another replica does here."""
    if kind == "enable":
        hl.enable(h)
    else:
        h.depleted_until = None
