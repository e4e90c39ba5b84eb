"""The dashboard's one status: what the Health tile, the Recommendation, the alert banner and
the Emergency tile all read, so that they cannot contradict each other — nor ``/api/health``,
``/api/status`` and the emergency status, which read the same one status
(:mod:`quotaflow.services.readiness`).

The level is the gateway's: ``critical`` when no key can take a request, ``warning`` when
some cannot (disabled, invalid, cooling down or out of quota), else ``ok``. Agents at their
own budgets and the alerts they raise do not move it (the banner lists the alerts, the agents
section their budgets). The Emergency tile shows the emergency status, which is never calmer
than the level.
"""

from __future__ import annotations

from typing import Any

from quotaflow.services.readiness import COOLING, DEPLETED, DISABLED, INVALID, Readiness
from quotaflow.services.status import KeyStatus

TITLES = {"ok": "healthy", "warning": "degraded", "critical": "no key can serve"}
# A blocked key's state on its card (its quota state otherwise).
BLOCKED_STATE = {DISABLED: "disabled", INVALID: "invalid", COOLING: "cooling", DEPLETED: "depleted"}


def key_state(key: KeyStatus) -> str:
    """One state per key: disabled, invalid, cooling, depleted, critical, warning or ok."""
    if key.block is not None:
        return BLOCKED_STATE[key.block.kind]
    return key.state.value


def status_json(
    ready: Readiness, recommendation: dict[str, Any], emergency: dict[str, Any]
) -> dict[str, Any]:
    """``{level, title, message, keys_total, keys_available, …}``: see the module docstring."""
    level = ready.level
    title = "no keys" if ready.keys == 0 else TITLES[level]
    message = f"{ready.message()}."
    if ready.ready and recommendation.get("route") and recommendation.get("chosen") is None:
        message += " No key has room for a typical request now: see why under Recommendation."
    return {
        "level": level,
        "title": title,
        "message": message,
        "keys_total": ready.keys,
        "keys_available": ready.usable,
        "keys_disabled": ready.count(DISABLED) + ready.count(INVALID),
        "keys_invalid": ready.count(INVALID),
        "keys_cooling": ready.count(COOLING),
        "keys_depleted": ready.count(DEPLETED),
        "can_serve": ready.ready,
        "emergency": emergency["status"],
        "emergency_message": emergency["message"],
    }
