"""Per provider and key quota rows: seed 000's ``/api/status``, used by agents, the
dashboard and the CLI. Whether a key can serve, and the ``health`` of the document, come from
the gateway's one status (:mod:`quotaflow.services.readiness`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quotaflow.config.describe import key_line, learned_limits, learned_text
from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key, Provider
from quotaflow.engine.limits import Limit, LimitUsage, remaining_share, state_of
from quotaflow.gateway import Gateway
from quotaflow.services.readiness import DEPLETED, DISABLED, INVALID, Block, Readiness, key_block
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
    block: Block | None = None  # why the key cannot serve now (None: it can)

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
    reason: str | None = None  # why no key of the provider can serve (None: one can)

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
            "reason": self.reason,
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
        state = state_of(share, s.warning, s.critical) if available else blocked_state(rows)
        out.append(
            ProviderStatus(
                name, total, used, reserved, max(total - used - reserved, 0.0), share * 100.0,
                state, available, gw.forced_provider == name, rows, metric,
                None if available else blocked_reason(rows),
            )
        )  # fmt: skip
    return out


def blocked_state(rows: list[KeyStatus]) -> State:
    """The state of a provider none of whose keys can serve: INVALID when the provider
    rejected every key, DISABLED when each is disabled or rejected (not a quota matter
    either), DEPLETED when one is out of quota, else COOLING (rate limited or failing for
    now, with quota left)."""
    kinds = {r.block.kind if r.block else DEPLETED for r in rows}
    if kinds == {INVALID}:
        return State.INVALID
    if kinds <= {DISABLED, INVALID}:
        return State.DISABLED
    if DEPLETED in kinds:
        return State.DEPLETED
    return State.COOLING


def blocked_reason(rows: list[KeyStatus]) -> str:
    """Why no key of a provider can serve, key by key."""
    why = "; ".join(f"{r.label or r.key_id}: {r.reason}" for r in rows)
    return f"no key can serve ({why})"


def _key_status(
    gw: Gateway, k: Key, provider: Provider, usages: Mapping[str, LimitUsage], now: float
) -> KeyStatus:
    s = gw.settings
    prim = primary_limit(k)
    own = [usages[lim.id] for lim in (*k.limits, *provider.limits)]
    u = usages[prim.id] if prim is not None else None
    h = gw.health.setdefault(k.id, hl.Health())
    block = key_block(gw, k, usages, now)
    share = u.used_share if u is not None else 1.0 - remaining_share(own)
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
        state=_key_state(block, max(share, 1.0 - remaining_share(own)), s.warning, s.critical),
        available=block is None,
        reason=block.reason if block else None,
        limits=[limit_json(x) for x in own],
        quota_metric=prim.metric if prim else None,
        quota_window=str(prim.window) if prim else None,
        plan=k.plan,
        learned_limits=learned,
        summary=summary,
        block=block,
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


def _key_state(block: Block | None, share: float, warning: float, critical: float) -> State:
    """A key's quota state by its used share, unless it is disabled or invalid (not quota
    matters)."""
    if block is not None and block.kind == INVALID:
        return State.INVALID
    if block is not None and block.kind == DISABLED:
        return State.DISABLED
    return state_of(share, warning, critical)


def readiness_of(rows: list[ProviderStatus]) -> Readiness:
    """The gateway's one status, from the rows' keys (the store answered: the rows were read)."""
    keys = [k for r in rows for k in r.keys]
    return Readiness(len(keys), {k.key_id: k.block for k in keys if k.block is not None})


HEALTH_WORDS = {"ok": "healthy", "warning": "degraded", "critical": "critical"}


def system_health(rows: list[ProviderStatus]) -> dict[str, str]:
    """Seed 000's ``health`` block: the one status as healthy, degraded or critical."""
    if not rows:
        return {"status": "critical", "message": "No providers configured: add a key"}
    ready = readiness_of(rows)
    if ready.level == "ok":
        return {"status": "healthy", "message": "All providers operational"}
    return {"status": HEALTH_WORDS[ready.level], "message": ready.message()}


async def status_document(gw: Gateway) -> dict[str, Any]:
    """Seed 000's ``GET /api/status`` (also ``quotaflow status``)."""
    rows = await provider_statuses(gw)
    total = sum(r.quota_total for r in rows)
    taken = sum(r.quota_used + r.reserved for r in rows)
    return {
        "success": True,
        "providers": [r.to_json() for r in rows],
        "health": system_health(rows),
        "forced_provider": gw.forced_provider,
        "total_providers": len(rows),
        "available_providers": sum(1 for r in rows if r.available),
        "overall_used_pct": round(taken / total * 100.0, 2) if total else 0.0,
    }
