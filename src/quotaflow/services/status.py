"""Per provider and key quota rows: seed 000's ``/api/status``, used by agents, the
dashboard and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key
from quotaflow.engine.limits import Limit, LimitUsage, remaining_share, state_of
from quotaflow.gateway import Gateway
from quotaflow.types import State

_WINDOW_RANK = {"once": 6, "month": 5, "day": 4, "hour": 3, "rolling": 2, "minute": 1}


def primary_limit(key: Key) -> Limit | None:
    """The key's main token quota: its token limit with the longest window."""
    tokens = [lim for lim in key.limits if lim.metric == "tokens"]
    if not tokens:
        return None
    return max(
        tokens,
        key=lambda lim: (_WINDOW_RANK[lim.window.kind], lim.window.seconds, -lim.amount),
    )


def usable_reason(gw: Gateway, key: Key, now: float) -> str | None:
    """Why a key can't be used now (disabled, cooling down, …), or ``None``."""
    if not key.enabled:
        return "disabled by an operator"
    return hl.unavailable_reason(gw.health.setdefault(key.id, hl.Health()), now)


def as_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 6)


@dataclass(slots=True)
class KeyStatus:
    key_id: str
    label: str
    api_key: str  # masked
    quota_total: float
    quota_used: float
    reserved: float
    remaining: float
    used_pct: float
    state: State
    available: bool
    reason: str | None
    limits: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "label": self.label,
            "api_key": self.api_key,
            "quota_total": as_number(self.quota_total),
            "quota_used": as_number(self.quota_used),
            "reserved": as_number(self.reserved),
            "remaining": as_number(self.remaining),
            "used_pct": round(self.used_pct, 2),
            "state": self.state.value,
            "available": self.available,
            "reason": self.reason,
            "limits": self.limits,
        }


@dataclass(slots=True)
class ProviderStatus:
    provider: str
    quota_total: float
    quota_used: float
    reserved: float
    remaining: float
    used_pct: float
    state: State
    available: bool
    forced: bool
    keys: list[KeyStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "quota_total": as_number(self.quota_total),
            "quota_used": as_number(self.quota_used),
            "remaining": as_number(self.remaining),
            "used_pct": round(self.used_pct, 2),
            "state": self.state.value,
            "reserved": as_number(self.reserved),
            "available": self.available,
            "forced": self.forced,
            "keys": [k.to_json() for k in self.keys],
        }


def limit_json(u: LimitUsage) -> dict[str, Any]:
    lim = u.limit
    return {
        "id": lim.id,
        "metric": lim.metric,
        "window": str(lim.window),
        "amount": as_number(lim.amount),
        "used": as_number(u.used),
        "reserved": as_number(u.reserved),
        "remaining": as_number(u.remaining),
        "used_pct": round(min(u.used_share, 10.0) * 100.0, 2),
        "resets_at": u.resets_at,
    }


async def provider_statuses(gw: Gateway) -> list[ProviderStatus]:
    """One row per provider with keys, in configuration order."""
    now = gw.clock.now()
    s = gw.settings
    limits: dict[str, Limit] = {}
    for p in gw.config.providers.values():
        limits.update((lim.id, lim) for lim in p.limits)
    for k in gw.keys.values():
        limits.update((lim.id, lim) for lim in k.limits)
    usages = await gw.counters.snapshot(limits.values(), now)
    out = []
    for name, provider in gw.config.providers.items():
        keys = gw.provider_keys(name)
        if not keys:
            continue
        rows = []
        for k in keys:
            prim = primary_limit(k)
            own = [usages[lim.id] for lim in (*k.limits, *provider.limits)]
            u = usages[prim.id] if prim is not None else None
            reason = usable_reason(gw, k, now)
            share = u.used_share if u is not None else 1.0 - remaining_share(own)
            if reason is None and remaining_share(own) <= 0:
                reason = "quota used up"
            rows.append(
                KeyStatus(
                    k.id,
                    k.label,
                    k.masked,
                    u.limit.amount if u else 0.0,
                    u.used if u else 0.0,
                    u.reserved if u else 0.0,
                    u.remaining if u else 0.0,
                    share * 100.0,
                    state_of(max(share, 1.0 - remaining_share(own)), s.warning, s.critical),
                    reason is None,
                    reason,
                    [limit_json(x) for x in own],
                )
            )
        total = sum(r.quota_total for r in rows)
        used = sum(r.quota_used for r in rows)
        reserved = sum(r.reserved for r in rows)
        available = any(r.available for r in rows)
        if total > 0:
            share = (used + reserved) / total
        else:
            share = min((r.used_pct / 100.0 for r in rows if r.available), default=1.0)
        state = state_of(share, s.warning, s.critical) if available else State.DEPLETED
        out.append(
            ProviderStatus(
                name,
                total,
                used,
                reserved,
                max(total - used - reserved, 0.0),
                share * 100.0,
                state,
                available,
                gw.forced_provider == name,
                rows,
            )
        )
    return out


def system_health(rows: list[ProviderStatus]) -> dict[str, str]:
    """Seed 000's ``health`` block: healthy, degraded or critical, with a message."""
    if not rows:
        return {"status": "critical", "message": "No providers configured: add a key"}
    up = [r for r in rows if r.available and r.state is not State.DEPLETED]
    if not up:
        return {"status": "critical", "message": "All providers depleted"}
    low = [r.provider for r in rows if r not in up or r.state is not State.OK]
    if low:
        return {
            "status": "degraded",
            "message": f"{len(up)} of {len(rows)} providers available; low: {', '.join(low)}",
        }
    return {"status": "healthy", "message": "All providers operational"}


# -- choose / use ------------------------------------------------------------------------
