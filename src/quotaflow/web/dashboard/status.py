"""The dashboard's one status: what the Health tile, the Recommendation, the alert banner and
the Emergency tile all read, so that they cannot contradict each other.

The level is the worst of: whether a typical request can be served now (critical when no key
can take it), how many keys can take requests (warning when some cannot: disabled, invalid,
cooling down or out of quota), the active alerts, and the emergency level of the budgets.
"""

from __future__ import annotations

from typing import Any

from quotaflow.engine.words import plural

LEVELS = ("ok", "warning", "critical")
# The emergency scale (normal < warning < critical < emergency) on the status scale.
EMERGENCY_LEVEL = {
    "normal": "ok",
    "warning": "warning",
    "critical": "critical",
    "emergency": "critical",
}
BUDGET_MESSAGE = {
    "normal": "All usage below the warning level.",
    "warning": "Usage above the warning level: watch the budgets.",
    "critical": "Usage above the critical level: fallback providers in use.",
    "emergency": "Usage above the emergency level: calls may soon be refused.",
}
ALERT_LEVEL = {"warning": "warning", "error": "warning", "critical": "critical"}


def _worst(*levels: str) -> str:
    return max(levels, key=LEVELS.index)


def budgets_level(emergency: dict[str, Any]) -> str:
    """The emergency level of what was used: providers' and agents' budgets by their usage.

    The emergency status counts an unavailable provider as fully used; here a key that cannot
    serve (cooling down, disabled) is already in the status, and counting it again would call
    a six-second cool-down an emergency."""
    t = emergency.get("thresholds") or {}
    bounds = [t.get("warning", 80.0), t.get("critical", 95.0), t.get("emergency", 98.0)]
    used = [p["usage_percentage"] for p in emergency.get("providers", [])]
    used += [b["usage_percentage"] for b in emergency.get("budgets", [])]
    top = max(used, default=0.0)
    names = ["normal", "warning", "critical", "emergency"]
    return names[sum(1 for b in bounds if top >= b)]


def key_state(key: dict[str, Any]) -> str:
    """One state per key: disabled, cooling, depleted, critical, warning or ok."""
    health = key.get("health") or {}
    if health.get("disabled_reason") or not key.get("enabled", True):
        return "disabled"
    if health.get("cooldown_until"):
        return "cooling"
    if not key.get("available", True):
        return "depleted"
    return str(key.get("state", "ok"))


def status_json(
    providers: list[dict[str, Any]],
    recommendation: dict[str, Any],
    alerts: dict[str, Any],
    emergency: dict[str, Any],
) -> dict[str, Any]:
    """``{level, title, message, keys_total, keys_available, …}``: see the module docstring."""
    keys = [k for p in providers for k in p["keys"]]
    states = [key_state(k) for k in keys]
    total = len(keys)
    usable = sum(1 for s in states if s not in ("disabled", "cooling", "depleted"))
    disabled = states.count("disabled")
    cooling = states.count("cooling")
    depleted = states.count("depleted")
    why = [
        f"{n} {what}"
        for n, what in (
            (disabled, "disabled"),
            (cooling, "cooling down"),
            (depleted, "out of quota"),
        )
        if n
    ]
    served = recommendation.get("chosen") is not None or recommendation.get("route") is None
    if not total:
        level, title = "critical", "no keys"
        message = "No keys configured: add one with “+ Add key”."
    elif not served:
        level, title = "critical", "no key can serve"
        message = f"No key could take a request now ({', '.join(why) or 'no headroom'})."
    elif usable < total:
        level, title = "warning", "degraded"
        message = f"{usable} of {plural(total, 'key')} available; {', '.join(why)}."
    else:
        level, title = "ok", "healthy"
        message = f"All {plural(total, 'key')} available." if total > 1 else "The key is available."
    active = alerts.get("active") or []
    alert_level = _worst("ok", *(ALERT_LEVEL.get(a.get("severity", ""), "warning") for a in active))
    budgets = budgets_level(emergency)
    overall = _worst(level, alert_level, EMERGENCY_LEVEL[budgets])
    if overall != level:
        title = {"warning": "attention", "critical": "critical"}[overall]
        if alert_level == overall:
            message = f"{message} {plural(len(active), 'active alert')}."
        else:
            message = f"{message} Budgets at the {budgets} level ({emergency.get('message', '')})."
    # The Emergency tile shows the budgets' level, raised to the status level when that is worse.
    shown, shown_message = budgets, BUDGET_MESSAGE[budgets]
    if LEVELS.index(EMERGENCY_LEVEL[shown]) < LEVELS.index(overall):
        shown = {"ok": "normal", "warning": "warning", "critical": "critical"}[overall]
        shown_message = message
    return {
        "level": overall,
        "title": title,
        "message": message,
        "keys_total": total,
        "keys_available": usable,
        "keys_disabled": disabled,
        "keys_cooling": cooling,
        "keys_depleted": depleted,
        "can_serve": served and total > 0,
        "emergency": shown,
        "emergency_message": shown_message,
    }
