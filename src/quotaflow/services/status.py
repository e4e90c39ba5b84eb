"""Per provider and key quota rows: seed 000's ``/api/status``, used by agents, the
dashboard and the CLI."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quotaflow.config.describe import key_line, learned_limits, learned_text
from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key, Provider
from quotaflow.engine.limits import Limit, LimitUsage, remaining_share, state_of
from quotaflow.gateway import Gateway
from quotaflow.types import State

_WINDOW_RANK = {"once": 6, "month": 5, "day": 4, "hour": 3, "rolling": 2, "minute": 1}


def primary_limit(key: Key) -> Limit | None:
    """The key's main quota: its token limit with the longest window; for a key counted in
    requests only (Groq's and Gemini's free tiers), its request limit; else its cost limit."""
    for metric in ("tokens", "requests", "cost"):
        limits = [lim for lim in key.limits if lim.metric == metric]
        if limits:
            return max(
                limits,
                key=lambda lim: (_WINDOW_RANK[lim.window.kind], lim.window.seconds, -lim.amount),
            )
    return None


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
    quota_metric: str | None = None  # what quota_* count; None: the key has no gateway limit
    quota_window: str | None = None  # the reset window of that quota (day, month, once, …)
    plan: str = "paid"
    learned_limits: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "label": self.label,
            "api_key": self.api_key,
            "plan": self.plan,
            "quota_metric": self.quota_metric,
            "quota_window": self.quota_window,
            "quota_total": as_number(self.quota_total),
            "quota_used": as_number(self.quota_used),
            "reserved": as_number(self.reserved),
            "remaining": as_number(self.remaining),
            "used_pct": round(self.used_pct, 2),
            "state": self.state.value,
            "available": self.available,
            "reason": self.reason,
            "limits": self.limits,
            "learned_limits": self.learned_limits,
            "limits_summary": self.summary,
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
    quota_metric: str | None = None  # what quota_* count: its keys' main quota

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "quota_metric": self.quota_metric,
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
        "source": lim.source,
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
        rows = [_key_status(gw, k, provider, usages, now) for k in keys]
        metric = next((r.quota_metric for r in rows if r.quota_metric), None)
        counted = [r for r in rows if r.quota_metric == metric]
        total = sum(r.quota_total for r in counted)
        used = sum(r.quota_used for r in counted)
        reserved = sum(r.reserved for r in counted)
        available = any(r.available for r in rows)
        if total > 0:
            share = (used + reserved) / total
        else:
            share = min((r.used_pct / 100.0 for r in rows if r.available), default=1.0)
        state = state_of(share, s.warning, s.critical) if available else State.DEPLETED
        if all(r.state is State.INVALID for r in rows):
            state = State.INVALID  # every key rejected by the provider: not a quota matter
        out.append(
            ProviderStatus(
                name, total, used, reserved, max(total - used - reserved, 0.0), share * 100.0,
                state, available, gw.forced_provider == name, rows, metric,
            )
        )  # fmt: skip
    return out


def _key_status(
    gw: Gateway, k: Key, provider: Provider, usages: Mapping[str, LimitUsage], now: float
) -> KeyStatus:
    s = gw.settings
    prim = primary_limit(k)
    own = [usages[lim.id] for lim in (*k.limits, *provider.limits)]
    u = usages[prim.id] if prim is not None else None
    reason = usable_reason(gw, k, now)
    share = u.used_share if u is not None else 1.0 - remaining_share(own)
    if reason is None and remaining_share(own) <= 0:
        reason = "quota used up"
    h = gw.health.get(k.id)
    invalid = h is not None and hl.is_invalid(h)
    learned = learned_limits(h, now)
    summary = key_line(k, provider.limits, [learned_text(x) for x in learned])
    return KeyStatus(
        key_id=k.id,
        label=k.label,
        api_key=k.masked,
        quota_total=u.limit.amount if u else 0.0,
        quota_used=u.used if u else 0.0,
        reserved=u.reserved if u else 0.0,
        remaining=u.remaining if u else 0.0,
        used_pct=share * 100.0,
        state=State.INVALID
        if invalid
        else state_of(max(share, 1.0 - remaining_share(own)), s.warning, s.critical),
        available=reason is None,
        reason=reason,
        limits=[limit_json(x) for x in own],
        quota_metric=prim.metric if prim else None,
        quota_window=str(prim.window) if prim else None,
        plan=k.plan,
        learned_limits=learned,
        summary=summary,
    )


async def key_list(gw: Gateway, added: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Every key as ``/api/keys`` lists it: its status row with its provider, whether it was
    added at runtime (``managed``), and what the ledger booked on it in all (``booked``:
    requests, tokens, cost — a key without a gateway limit has no ``quota_used`` to show)."""
    booked = {t.group: t for t in await gw.ledger.usage_totals("key")}
    out = []
    for row in await provider_statuses(gw):
        for k in row.keys:
            t = booked.get(k.key_id)
            d = k.to_json()
            d["provider"] = row.provider
            d["managed"] = added(k.key_id)
            d["booked"] = {
                "requests": t.requests if t else 0,
                "total_tokens": t.total_tokens if t else 0,
                "cost_usd": round(t.cost_usd, 6) if t else 0.0,
            }
            out.append(d)
    return out


def system_health(rows: list[ProviderStatus]) -> dict[str, str]:
    """Seed 000's ``health`` block: healthy, degraded or critical, with a message."""
    if not rows:
        return {"status": "critical", "message": "No providers configured: add a key"}
    up = [r for r in rows if r.available and r.state is not State.DEPLETED]
    if not up:
        if all(r.state is State.INVALID for r in rows):
            return {"status": "critical", "message": "Every key was rejected by its provider"}
        return {"status": "critical", "message": "All providers depleted or unavailable"}
    low = [r.provider for r in rows if r not in up or r.state is not State.OK]
    if low:
        return {
            "status": "degraded",
            "message": f"{len(up)} of {len(rows)} providers available; low: {', '.join(low)}",
        }
    return {"status": "healthy", "message": "All providers operational"}
