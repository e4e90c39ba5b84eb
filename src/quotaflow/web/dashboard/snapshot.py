"""One snapshot of everything the dashboard shows, section by section.

The snapshot never carries a secret (keys are masked as in ``/api/status``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quotaflow.engine.candidates import RequestFacts
from quotaflow.engine.limits import state_of
from quotaflow.engine.pricing import COST_ESTIMATED
from quotaflow.gateway import CallContext, Gateway
from quotaflow.runtime import Runtime
from quotaflow.services import status
from quotaflow.services.alerts import alert_json, holding
from quotaflow.services.token_usage import emergency_status, measure_json, months_back
from quotaflow.storage.base import LedgerQuery, LedgerRow
from quotaflow.types import Measure
from quotaflow.web.dashboard.series import SeriesCache
from quotaflow.web.dashboard.status import key_state, status_json

# The "typical request" the recommendation is computed for.
TYPICAL_PROMPT_TOKENS = 500
TYPICAL_MAX_TOKENS = 256
TOP_CANDIDATES = 5
LOG_ROWS = 50
ALERT_ROWS = 50
MAX_AGENTS = 100


# -- sections ------------------------------------------------------------------------------
def health_json(gw: Gateway, key_id: str, now: float) -> dict[str, Any]:
    h = gw.health.get(key_id)
    if h is None:
        return {}
    cooling = h.cooldown_until > now
    return {
        "latency_ewma_ms": h.latency_ewma_ms,
        "ttfb_ewma_ms": h.ttfb_ewma_ms,
        "success_rate": h.success_rate,
        "successes": h.successes,
        "failures": h.failures,
        "consecutive_failures": h.consecutive_failures,
        "circuit": h.circuit,
        "cooldown_until": h.cooldown_until if cooling else None,
        "cooldown_reason": h.cooldown_reason if cooling else None,
        "disabled_reason": h.disabled_reason,
        "depleted_until": h.depleted_until,
        "last_error_kind": h.last_error_kind,
        "last_error_message": h.last_error_message,
        "last_success": h.last_success,
        "last_error": h.last_error,
    }


def providers_json(
    mg: Runtime, rows: list[status.ProviderStatus], now: float
) -> list[dict[str, Any]]:
    """Seed 000's provider rows, each key with its limits' states and its health."""
    gw = mg.gateway
    s = gw.settings
    out = []
    for row in rows:
        d = row.to_json()
        for k, key_row in zip(d["keys"], row.keys, strict=True):
            key = gw.keys.get(k["key_id"])
            k["enabled"] = bool(key and key.enabled) and not gw.health[k["key_id"]].disabled_reason
            k["managed"] = mg.keys.is_managed(k["key_id"])
            k["health"] = health_json(gw, k["key_id"], now)
            k["status"] = key_state(key_row)
            for lim in k["limits"]:
                lim["state"] = state_of(lim["used_pct"] / 100.0, s.warning, s.critical).value
                lim["shared"] = not lim["id"].startswith("key:")
        out.append(d)
    return out


def system_json(rows: list[status.ProviderStatus], gw: Gateway, now: float) -> dict[str, Any]:
    keys = [k for r in rows for k in r.keys]
    total = sum(r.quota_total for r in rows)
    taken = sum(r.quota_used + r.reserved for r in rows)
    return {
        "total_providers": len(rows),
        "available_providers": sum(1 for r in rows if r.available),
        "total_keys": len(keys),
        "available_keys": sum(1 for k in keys if k.available),
        "overall_used_pct": round(taken / total * 100.0, 2) if total else 0.0,
        "forced_provider": gw.forced_provider,
        "health": status.system_health(rows),
        "strategy": gw.settings.strategy,
        "in_flight": gw.in_flight,
        "uptime_s": round(now - (gw.started_at or now), 1),
        "tz": str(gw.config.tz),
    }


async def recommendation_json(gw: Gateway) -> dict[str, Any]:
    """Which key a typical request on the "auto" route (else the first) would get, and why."""
    route = gw.config.routes.get("auto") or next(iter(gw.config.routes.values()), None)
    request = {"prompt_tokens": TYPICAL_PROMPT_TOKENS, "max_tokens": TYPICAL_MAX_TOKENS}
    if route is None:
        return {"route": None, "request": request, "chosen": None, "candidates": [], "rejected": []}
    facts = RequestFacts(
        prompt_tokens=TYPICAL_PROMPT_TOKENS,
        max_tokens=TYPICAL_MAX_TOKENS,
        forced_provider=gw.forced_provider,
        min_completion_tokens=gw.settings.min_completion_tokens,
    )
    ranked, rejected, _ = await gw.candidates(route, facts, CallContext(), planned=True)
    cands = [
        {
            "provider": s.candidate.provider,
            "key_id": s.candidate.key.id,
            "label": s.candidate.key.label,
            "model": s.candidate.model,
            "score": round(s.score, 4),
            "breakdown": {k: round(v, 4) for k, v in s.breakdown.items()},
            "state": s.candidate.state.value,
            "flags": sorted(f for f, on in s.candidate.flags.items() if on),
            "est_cost_usd": round(s.candidate.est_cost_usd, 6),
        }
        for s in ranked
        if s.candidate.plan is not None
    ]
    return {
        "route": route.name,
        "strategy": route.strategy or gw.settings.strategy,
        "request": request,
        "forced_provider": gw.forced_provider,
        "chosen": cands[0] if cands else None,
        "candidates": cands[:TOP_CANDIDATES],
        "rejected": [
            {"provider": r.provider, "key_id": r.key_id, "model": r.model, "reason": r.reason}
            for r in rejected[:10]
        ],
    }


def with_refusals(
    rows: list[dict[str, Any]], recent: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The ledger's latest rows with the latest refusals among them, newest first: a request
    no key could take leaves no ledger row, only the observer's note of it."""
    refused = [
        {
            **r,
            "id": None,
            "success": False,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost_usd": 0.0,
            "latency_ms": None,
            "source": "proxy",
        }
        for r in recent
        # turned away before routing (a 429 refusal has its own ledger row)
        if r["status"] == "refused" and r.get("http_status") != 429
    ]
    if not refused:
        return rows
    merged = sorted([*rows, *refused], key=lambda r: r["ts"], reverse=True)
    return merged[:LOG_ROWS]


def cost_estimated(r: LedgerRow) -> bool:
    """Whether the row's cost is an estimate (the SQL twin is ``ESTIMATED_COST``)."""
    if r.status in ("error", "refused"):
        return False
    return r.estimated or (r.detail or "").startswith(COST_ESTIMATED)


def log_json(rows: list[LedgerRow]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "ts": r.ts,
            "request_id": r.request_id,
            "attempt": r.attempt,
            "agent": r.agent,
            "route": r.route,
            "provider": r.provider,
            "key_id": r.key_id,
            "model": r.model,
            "status": r.status,
            "success": r.status in ("ok", "reported"),
            "source": r.source,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.total_tokens,
            "cost_usd": round(r.cost_usd, 6),
            "cost_estimated": cost_estimated(r),
            "latency_ms": None if r.latency_ms is None else round(r.latency_ms, 1),
            "error_kind": r.error_kind,
            "http_status": r.http_status,
            "detail": (r.detail or "")[:200] or None,
            "stream": r.stream,
        }
        for r in rows
    ]


async def agents_json(mg: Runtime) -> list[dict[str, Any]]:
    """Registered agents and those seen in the ledger this month: budgets and usage."""
    gw = mg.gateway
    s = gw.settings
    month = months_back(gw, 1)[0]
    used = await mg.store.usage_by(["agent"], month.start, month.end)
    registered = {a.name: a for a in mg.agents.all()}
    names = sorted({*registered, *(a for (a,) in used if a)})[:MAX_AGENTS]
    limits = [lim for a in registered.values() for lim in a.limits]
    usages = await gw.counters.snapshot(limits, gw.clock.now())
    out = []
    for name in names:
        agent = registered.get(name)
        budgets = []
        for lim in agent.limits if agent else ():
            d = status.limit_json(usages[lim.id])
            d["state"] = state_of(d["used_pct"] / 100.0, s.warning, s.critical).value
            budgets.append(d)
        out.append(
            {
                "name": name,
                "registered": agent is not None,
                "source": agent.source if agent else "ledger",
                "has_key": bool(agent and agent.key_hash),
                "provider_order": list(agent.spec.providers) if agent else [],
                "month": month.label,
                "usage": measure_json(used.get((name,), Measure())),
                "budgets": budgets,
            }
        )
    return out


def alert_severity(kind: str, level: str) -> str:
    if kind == "all_exhausted" or level in ("critical", "100%"):
        return "critical"
    if kind in ("provider_failing", "key_invalid"):  # a provider failing or refusing a key
        return "error"  # a key disabled on purpose is a warning (its level before: "error")
    try:
        return "critical" if float(level.rstrip("%")) >= 90 else "warning"
    except ValueError:
        return "warning"


async def alerts_json(mg: Runtime) -> dict[str, Any]:
    """The recent alerts, and those still holding (their subject is still at that level)."""
    rows = await mg.alerts.recent(ALERT_ROWS)
    levels = await mg.store.alert_levels()
    recent = []
    active = []
    for a, on in zip(rows, holding(rows, levels), strict=True):  # newest first
        d = {**alert_json(a), "ts": a.ts, "severity": alert_severity(a.kind, a.level)}
        recent.append(d)
        if on:
            active.append(d)
    return {"recent": recent, "active": active}


async def build_snapshot(mg: Runtime, series: SeriesCache, stamp: object = None) -> dict[str, Any]:
    """Everything the dashboard shows, as of now; ``stamp`` changes with usage (it tells
    the forecast when to recompute)."""
    gw = mg.gateway
    now = gw.clock.now()
    rows = await status.provider_statuses(gw)
    emergency = await emergency_status(gw, mg.agents.all(), rows)
    system = system_json(rows, gw, now)
    system["emergency"] = {
        k: emergency[k] for k in ("status", "emergency", "message", "max_usage_percentage")
    }
    timeline = await series.timeline(now)
    providers = providers_json(mg, rows, now)
    recommendation = await recommendation_json(gw)
    alerts = await alerts_json(mg)
    return {
        "generated_at": now,
        "system": system,
        # One status for the Health tile, the Recommendation, the banner and the Emergency tile.
        "status": status_json(status.readiness_of(rows), recommendation, emergency),
        "providers": providers,
        "recommendation": recommendation,
        "log": with_refusals(
            log_json(await gw.ledger.query(LedgerQuery(limit=LOG_ROWS))), gw.observer.recent
        ),
        # requests of the last hour by how they ended, counted as reports count them
        "requests": await series.outcomes(now),
        # models booked at a stand-in price (no known price), one line each
        "unpriced": sorted(gw.observer.unpriced_models.values()),
        "charts": {"timeline": timeline, "cost_per_day": await series.cost_per_day(now)},
        "forecast": await series.forecast(now, stamp),
        "agents": await agents_json(mg),
        "alerts": alerts,
    }
