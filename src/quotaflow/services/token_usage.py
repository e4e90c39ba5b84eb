"""Seed 003's token-usage reports: per month, per agent (``ai_name``) and provider.

Months are calendar months in the configured time zone. Usage comes from the ledger (the
source of truth); budgets and the recommended provider come from the agent's limits and
provider order (:mod:`quotaflow.services.agents`). Emergency levels: warning 80 %, critical 95 %,
emergency 98 % (``settings.emergency_levels``), of the gateway's providers for the emergency
status itself and of each agent's budgets beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quotaflow.engine.windows import Window, next_reset, window_start
from quotaflow.gateway import Gateway
from quotaflow.services.agents import Agent, pick_provider, provider_shares
from quotaflow.services.status import (
    ProviderStatus,
    as_number,
    limit_json,
    provider_statuses,
    readiness_of,
)
from quotaflow.storage.management import ManagementStore
from quotaflow.types import Measure

MONTH = Window("month")


@dataclass(frozen=True, slots=True)
class Month:
    label: str  # "2026-01"
    start: float
    end: float


def months_back(gw: Gateway, n: int) -> list[Month]:
    """The current month and the ``n - 1`` before it, newest first."""
    tz = gw.config.tz
    t = gw.clock.now()
    out = []
    for _ in range(n):
        start = window_start(t, MONTH, tz)
        end = next_reset(t, MONTH, tz)
        assert end is not None
        out.append(Month(datetime.fromtimestamp(start, tz).strftime("%Y-%m"), start, end))
        t = start - 1.0
    return out


def measure_json(m: Measure, estimated: bool = False) -> dict[str, Any]:
    """Usage as the API shows it; ``cost_estimated`` when part of the cost is an estimate
    (a model with no known price, booked at a stand-in, or guessed tokens)."""
    return {
        "tokens_used": int(m.tokens),
        "requests": int(m.requests),
        "cost_usd": round(m.cost, 6),
        "cost_estimated": estimated,
    }


def _add(a: Measure, b: Measure) -> Measure:
    return Measure(a.tokens + b.tokens, a.requests + b.requests, a.cost + b.cost)


def level_of(share: float, levels: list[float]) -> str:
    warning, critical, emergency = levels
    if share >= emergency:
        return "emergency"
    if share >= critical:
        return "critical"
    if share >= warning:
        return "warning"
    return "normal"


async def summary(gw: Gateway, store: ManagementStore, agent: str | None = None) -> dict[str, Any]:
    """This month's usage in total, per provider and per agent. With ``agent``, that agent's
    usage only (what an agent key reads): its total, its row, its usage per provider; the
    providers' quota columns (``quota_total``, ``usage_percentage``, ``state``) stay the
    providers' own, as ``/api/status`` shows them."""
    month = months_back(gw, 1)[0]
    group = ["agent", "provider"]
    by = await store.usage_by(group, month.start, month.end, agent=agent)
    guessed = await store.estimated_cost_groups(group, month.start, month.end, agent=agent)
    total = Measure()
    agents: dict[str, Measure] = {}
    providers: dict[str, Measure] = {}
    for (agent, provider), m in by.items():
        total = _add(total, m)
        agents[agent] = _add(agents.get(agent, Measure()), m)
        providers[provider] = _add(providers.get(provider, Measure()), m)
    rows = {r.provider: r for r in await provider_statuses(gw)}
    prov_json: dict[str, Any] = {}
    for name in {*rows, *(p for p in providers if p)}:
        r = rows.get(name)
        d = measure_json(providers.get(name, Measure()), any(p == name for _, p in guessed))
        d.update(
            {
                "quota_total": as_number(r.quota_total) if r else 0,
                # what counts against quota_total (its keys' quota windows), of which
                # usage_percentage is; tokens_used is the month's use on every key
                "quota_used": as_number(r.quota_used) if r else 0,
                "usage_percentage": round(r.used_pct, 2) if r else 0.0,
                "state": r.state.value if r else "unknown",
            }
        )
        prov_json[name] = d
    return {
        "month": month.label,
        "total": measure_json(total, bool(guessed)),
        "providers": dict(sorted(prov_json.items())),
        "agents": {
            a: measure_json(m, any(g == a for g, _ in guessed)) for a, m in sorted(agents.items())
        },
    }


async def agent_usage(
    gw: Gateway, store: ManagementStore, name: str, agent: Agent | None
) -> dict[str, Any]:
    month = months_back(gw, 1)[0]
    by = await store.usage_by(["provider"], month.start, month.end, agent=name)
    guessed = await store.estimated_cost_groups(["provider"], month.start, month.end, agent=name)
    total = Measure()
    for m in by.values():
        total = _add(total, m)
    usages = await gw.counters.snapshot(agent.limits, gw.clock.now()) if agent else {}
    providers: dict[str, Any] = {}
    for (provider,), m in by.items():
        providers[provider] = measure_json(m, (provider,) in guessed)
    for lim in agent.limits if agent else ():
        _, at, p = lim.scope.partition("@")
        if at and lim.metric == "tokens" and lim.window.kind == "month":
            u = usages[lim.id]
            d = providers.setdefault(p, measure_json(Measure()))
            d["monthly_limit"] = as_number(lim.amount)
            d["usage_percentage"] = round(u.used_share * 100.0, 2)
            d["remaining"] = as_number(u.remaining)
    spec = agent.spec if agent else None
    return {
        "ai_name": name,
        "registered": agent is not None,
        "month": month.label,
        **measure_json(total, bool(guessed)),
        "providers": providers,
        "budgets": [limit_json(usages[lim.id]) for lim in (agent.limits if agent else ())],
        "provider_order": list(spec.providers) if spec else [],
        "switch_threshold": spec.switch_threshold if spec else None,
        "rate_limits": {
            "requests_per_minute": spec.requests_per_minute if spec else None,
            "requests_per_day": spec.requests_per_day if spec else None,
        },
        "max_tokens_per_request": spec.max_tokens_per_request if spec else None,
    }


async def provider_status(gw: Gateway, name: str, agent: Agent | None) -> dict[str, Any]:
    """Seed 003's recommendation: the primary while under the threshold, else the fallback."""
    if agent is not None and agent.spec.providers:
        pick = pick_provider(agent, await provider_shares(gw, agent))
        order = agent.spec.providers
        providers = {
            p: {
                "usage_percentage": round(pick.shares.get(p, 1.0) * 100.0, 2),
                "available": pick.shares.get(p, 1.0)
                < (agent.spec.switch_threshold if i < len(order) - 1 else 1.0),
                "role": "primary" if i == 0 else "fallback",
            }
            for i, p in enumerate(order)
        }
        return {
            "ai_name": name,
            "recommended_provider": pick.provider,
            "reason": pick.reason,
            "threshold": agent.spec.switch_threshold,
            "provider_order": list(order),
            "providers": providers,
        }
    rows = [r for r in await provider_statuses(gw) if r.available]
    best = max(rows, key=lambda r: 100.0 - r.used_pct, default=None)
    return {
        "ai_name": name,
        "recommended_provider": best.provider if best else None,
        "reason": "most_headroom" if best else "all_exhausted",
        "threshold": None,
        "provider_order": [],
        "providers": {
            r.provider: {
                "usage_percentage": round(r.used_pct, 2),
                "available": r.available,
                "role": "any",
            }
            for r in await provider_statuses(gw)
        },
    }


LEVEL_NAMES = ("normal", "warning", "critical", "emergency")
LEVEL_MESSAGES = {
    "normal": "All usage below the warning level",
    "warning": "Usage above the warning level: watch the budgets",
    "critical": "Usage above the critical level: fallback providers in use",
    "emergency": "Usage above the emergency level: calls may soon be refused",
}
# The gateway's one status on the emergency scale: never calmer than the health.
HEALTH_FLOOR = {"ok": "normal", "warning": "warning", "critical": "emergency"}


async def emergency_status(
    gw: Gateway, agents: list[Agent], rows: list[ProviderStatus] | None = None
) -> dict[str, Any]:
    """Seed 003's emergency status. Its ``status`` is the gateway's: the usage of the
    providers that can serve, never calmer than the one status (a key that cannot serve is at
    least a warning, no key able to serve an emergency). Each agent's budgets are told apart,
    in ``budgets`` and ``agents``: an agent at its own budget is refused, not the gateway."""
    levels = list(gw.settings.emergency_levels)
    rows = await provider_statuses(gw) if rows is None else rows
    providers = [
        {
            "provider": r.provider,
            "usage_percentage": round(r.used_pct, 2),
            "level": level_of(r.used_pct / 100.0 if r.available else 1.0, levels),
        }
        for r in rows
    ]
    budgets = await _budget_levels(gw, agents, levels)
    ready = readiness_of(rows)
    top = max((r.used_pct / 100.0 for r in rows if r.available), default=1.0)
    used, floor = level_of(top, levels), HEALTH_FLOOR[ready.level]
    level = max(used, floor, key=LEVEL_NAMES.index)
    told_by_health = ready.level != "ok" and LEVEL_NAMES.index(floor) >= LEVEL_NAMES.index(used)
    agent_levels: dict[str, str] = {}
    for b in budgets:
        agent_levels[b["agent"]] = max(
            agent_levels.get(b["agent"], "normal"), b["level"], key=LEVEL_NAMES.index
        )
    return {
        "status": level,
        "emergency": level == "emergency",
        "message": ready.message() if told_by_health else LEVEL_MESSAGES[level],
        "max_usage_percentage": round(top * 100.0, 2),
        "thresholds": {
            "warning": round(levels[0] * 100, 2),
            "critical": round(levels[1] * 100, 2),
            "emergency": round(levels[2] * 100, 2),
        },
        "providers": providers,
        "budgets": budgets,
        "agents": dict(sorted(agent_levels.items())),
    }


async def _budget_levels(
    gw: Gateway, agents: list[Agent], levels: list[float]
) -> list[dict[str, Any]]:
    """Each agent budget (not its rate limits) with its usage and level."""
    owned = [(a.name, lim) for a in agents for lim in a.limits if not lim.window.is_rate]
    usages = await gw.counters.snapshot([lim for _, lim in owned], gw.clock.now())
    return [
        {
            "agent": name,
            "limit": lim.id,
            "usage_percentage": round(usages[lim.id].used_share * 100.0, 2),
            "level": level_of(usages[lim.id].used_share, levels),
        }
        for name, lim in owned
    ]


async def history(gw: Gateway, store: ManagementStore, name: str, n: int) -> list[dict[str, Any]]:
    out = []
    for month in months_back(gw, n):
        by = await store.usage_by(["provider"], month.start, month.end, agent=name)
        total = Measure()
        for m in by.values():
            total = _add(total, m)
        out.append(
            {
                "month": month.label,
                **measure_json(total),
                "providers": {p: measure_json(m) for (p,), m in sorted(by.items())},
            }
        )
    return out
