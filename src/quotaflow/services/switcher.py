"""Seed 000's token switcher on top of the engine: provider status, choose, use, history.

A seed 000 "provider" is a quotaflow provider; with several keys, its row aggregates them
(``quota_total`` is the sum of the keys' primary token quotas) and lists each key under
``keys``. ``choose`` ranks with the headroom strategy (remaining %, preferred-provider
bonus, state penalty) and holds a reservation of ``tokens_estimate`` on the chosen key
(and the caller's agent budgets); ``use`` settles it. A reservation never settled expires
after ``settings.choose_ttl_s`` and is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from quotaflow.engine.candidates import RequestFacts
from quotaflow.engine.catalog import Deployment, Key, Route
from quotaflow.engine.limits import Limit, remaining_share
from quotaflow.errors import BadRequest, Forbidden
from quotaflow.gateway import CallContext, Gateway
from quotaflow.gateway.outcomes import exhausted_error
from quotaflow.services.holds import Hold as Hold
from quotaflow.services.holds import Holds as Holds
from quotaflow.services.status import provider_statuses
from quotaflow.storage.base import LedgerQuery, LedgerRow

# An agent may report up to this share above what it reserved (estimates are estimates);
# more, or usage without its own open reservation, only the admin may book.
USE_TOLERANCE = 0.10


@dataclass(slots=True)
class Choice:
    provider: str
    key: Key
    reason: str
    hold: Hold
    remaining_after: float
    score: float
    breakdown: dict[str, float]


def choose_route(gw: Gateway) -> Route:
    """One deployment per provider that has keys (its first model)."""
    deps = []
    for i, (name, p) in enumerate(gw.config.providers.items()):
        if not gw.provider_keys(name) or not p.models:
            continue
        model = next(iter(p.models.values()))
        deps.append(Deployment(name, model, model.tier, 1.0, p.priority, i))
    return Route("api:choose", tuple(deps), strategy="headroom")


async def choose(gw: Gateway, holds: Holds, tokens: int, ctx: CallContext) -> Choice:
    """Pick the provider and key with the most headroom and hold ``tokens`` on it."""
    route = choose_route(gw)
    facts = RequestFacts(
        prompt_tokens=tokens,
        max_tokens=0,
        forced_provider=ctx.forced_provider or gw.forced_provider,
        agent=ctx.agent,
        min_completion_tokens=0,
    )
    ttl = gw.settings.choose_ttl_s
    ranked, rejected, _ = await gw.candidates(route, facts, ctx, deployments=route.deployments)
    now = gw.clock.now()
    holds.sweep(now)
    for s in ranked:
        c = s.candidate
        if c.plan is None:
            continue
        out = await gw.counters.reserve(c.plan.claims, now, ttl_s=ttl)
        if not out.ok or out.reservation_id is None:
            continue
        hold = Hold(out.reservation_id, c.provider, c.key.id, ctx.agent, tokens, now, now + ttl)
        holds.add(hold)
        rows = {r.provider: r for r in await provider_statuses(gw)}
        row = rows.get(c.provider)
        reason = "forced_provider" if c.flags.get("forced") else "optimal_selection"
        if c.flags.get("preferred") and not c.flags.get("forced"):
            reason = "agent_provider_order"
        return Choice(
            c.provider, c.key, reason, hold, row.remaining if row else 0.0, s.score, s.breakdown
        )
    if not route.deployments:
        raise BadRequest("No providers available: no key is configured (POST /api/add_key)")
    # When the first limit frees (a daily budget frees at midnight), not "never".
    frees = [r.available_at for r in rejected if r.available_at is not None]
    err = exhausted_error(rejected, min(frees) if frees else None, now)
    err.message = "No providers available: " + err.message
    raise err


def allowed_use(hold: Hold) -> int:
    """The most tokens an agent may report against ``hold``."""
    return int(hold.tokens * (1 + USE_TOLERANCE))


def _agent_hold(
    holds: Holds,
    now: float,
    agent: str,
    *,
    reservation_id: str | None,
    key_id: str | None,
    provider: str | None,
    tokens: int,
) -> Hold:
    """The agent's own open reservation this report settles, with room for ``tokens``."""
    hold = holds.find(
        now,
        reservation_id=reservation_id,
        key_id=key_id,
        provider=None if key_id else provider,
        agent=None if reservation_id else agent,
    )
    if hold is None or hold.agent != agent:
        raise Forbidden(
            "an agent reports usage only against its own open reservation "
            "(POST /api/choose, then send its reservation_id); other usage needs the admin token"
        )
    if (key_id is not None and hold.key_id != key_id) or (
        provider is not None and hold.provider != provider
    ):
        raise BadRequest(f"reservation {hold.reservation_id!r} is on {hold.provider}/{hold.key_id}")
    if tokens > allowed_use(hold):
        raise BadRequest(
            f"tokens_used {tokens} is above the {hold.tokens} tokens reserved "
            f"(+{USE_TOLERANCE:.0%} allowed: at most {allowed_use(hold)}); "
            "reserve more with /api/choose",
            param="tokens_used",
        )
    return hold


async def report_use(
    gw: Gateway,
    holds: Holds,
    *,
    provider: str | None,
    key_id: str | None,
    tokens: int,
    success: bool,
    reason: str | None,
    ctx: CallContext,
    reservation_id: str | None = None,
    restrict_to: str | None = None,
) -> tuple[Key, bool]:
    """Book usage an agent reports: a ledger row (source ``reported``), then the counters.

    Settles the ``choose`` reservation it belongs to (by id, key or provider) when one is
    held. With ``restrict_to`` (a plain agent's name) only that agent's own open reservation
    may be settled, with at most :data:`USE_TOLERANCE` above what it reserved. Returns the
    key charged and whether a reservation was settled."""
    now = gw.clock.now()
    if restrict_to is not None:
        hold: Hold | None = _agent_hold(
            holds,
            now,
            restrict_to,
            reservation_id=reservation_id,
            key_id=key_id,
            provider=provider,
            tokens=tokens,
        )
        holds.take(now, reservation_id=hold.reservation_id if hold else None)
    else:
        hold = holds.take(
            now,
            reservation_id=reservation_id,
            key_id=key_id,
            provider=None if key_id else provider,
            agent=None,
        )
    if reservation_id is not None and hold is None:
        raise BadRequest(f"reservation {reservation_id!r} is unknown or expired; report without it")
    key = gw.keys.get(hold.key_id) if hold else None
    if key is None:
        key = await _key_for(gw, provider, key_id, now)
    await gw.booking.reported(
        key,
        tokens,
        success=success,
        reason=reason,
        agent=ctx.agent,
        extra_limits=[lim for lim in ctx.limits if applies_to(lim, key.provider)],
        held=hold.reservation_id if hold is not None else None,
    )
    return key, hold is not None


def applies_to(lim: Limit, provider: str) -> bool:
    """An agent budget scoped ``agent:<name>@<provider>`` binds on that provider only."""
    _, at, p = lim.scope.partition("@")
    return not at or p == provider


async def _key_for(gw: Gateway, provider: str | None, key_id: str | None, now: float) -> Key:
    if key_id is not None:
        key = gw.keys.get(key_id)
        if key is None:
            raise BadRequest(f"unknown key_id {key_id!r}")
        if provider is not None and key.provider != provider:
            raise BadRequest(
                f"key {key_id!r} belongs to provider {key.provider!r}, not {provider!r}"
            )
        return key
    assert provider is not None
    keys = gw.provider_keys(provider)
    if not keys:
        raise BadRequest(f"provider {provider!r} has no keys")
    if len(keys) == 1:
        return keys[0]
    usages = await gw.counters.snapshot([lim for k in keys for lim in k.limits], now)
    return max(keys, key=lambda k: remaining_share([usages[lim.id] for lim in k.limits]))


def history_json(rows: list[LedgerRow]) -> list[dict[str, Any]]:
    """Seed 000's ``usage_log`` rows (plus key, agent, model and source)."""
    return [
        {
            "id": r.id,
            "provider": r.provider,
            "timestamp": datetime.fromtimestamp(r.ts, UTC).isoformat(),
            "tokens_used": r.total_tokens,
            "success": r.status in ("ok", "reported"),
            "reason": r.detail or r.error_kind,
            "key_id": r.key_id,
            "agent": r.agent,
            "model": r.model,
            "source": r.source,
            "door": r.door,
            "status": r.status,
        }
        for r in rows
    ]


async def history(gw: Gateway, limit: int, agent: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` rows (of one ``agent`` only, when given)."""
    return history_json(await gw.ledger.query(LedgerQuery(agent=agent, limit=limit)))
