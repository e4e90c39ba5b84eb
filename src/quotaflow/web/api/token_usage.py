"""Seed 003's ``/api/token-usage/*`` endpoints.

Reads are open; ``test-ai-call`` needs an agent key (for its own ``ai_name``) or the admin
token; ``reset/{ai_name}`` needs the admin token.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from quotaflow.errors import BadRequest, Forbidden, NotFound
from quotaflow.runtime import Runtime
from quotaflow.services import token_usage
from quotaflow.services.agents import Agent, apply_token_cap, context_for
from quotaflow.services.alerts import alerts_json
from quotaflow.web.auth import require_admin, require_caller, require_reader
from quotaflow.web.connections import still_connected
from quotaflow.web.errors import json_response
from quotaflow.web.state import RUNTIME
from quotaflow.web.validate import (
    NAME,
    get_int,
    need_str,
    path_name,
    provider_arg,
    query_int,
    read_object,
)

MAX_PROMPT_CHARS = 200_000
TEST_CALL_FIELDS = frozenset({"ai_name", "prompt", "preferred_provider", "model", "max_tokens"})


def ok(body: dict[str, Any]) -> web.Response:
    return json_response({"success": True, **body})


async def known_agent(mg: Runtime, name: str) -> Agent | None:
    """The registered agent, ``None`` for one only seen in the ledger; 404 for neither."""
    agent = mg.agents.get(name)
    if agent is not None:
        return agent
    month = token_usage.months_back(mg.gateway, 1)[0]
    if name == "default" or name in await mg.store.agents_seen(month.start - 366 * 86400.0):
        return None
    raise NotFound(
        f"unknown ai_name {name!r}: no such agent and no usage recorded", code="unknown_agent"
    )


async def summary(request: web.Request) -> web.Response:
    """The month's usage; an agent key reads its own only (total, providers and agents)."""
    mg = request.app[RUNTIME]
    own = require_reader(request).own_rows_only
    return ok(await token_usage.summary(mg.gateway, mg.store, agent=own))


def own_path_name(request: web.Request) -> str:
    """The path's ``ai_name``, which a plain agent key may read only when it is its own."""
    name = path_name(request, "ai_name")
    require_reader(request).check_own(name)
    return name


async def ai_usage(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    name = own_path_name(request)
    agent = await known_agent(mg, name)
    return ok(await token_usage.agent_usage(mg.gateway, mg.store, name, agent))


async def provider_status(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    name = own_path_name(request)
    agent = await known_agent(mg, name)
    return ok(await token_usage.provider_status(mg.gateway, name, agent))


async def provider_status_all(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    month = token_usage.months_back(mg.gateway, 1)[0]
    names = {a.name for a in mg.agents.all()} | set(await mg.store.agents_seen(month.start))
    own = require_reader(request).own_rows_only
    if own is not None:
        names = {own}
    out = {}
    for name in sorted(names):
        out[name] = await token_usage.provider_status(mg.gateway, name, mg.agents.get(name))
    return ok({"agents": out, "count": len(out)})


async def emergency_status(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    own = require_reader(request).own_rows_only
    agents = [a for a in mg.agents.all() if own is None or a.name == own]
    return ok(await token_usage.emergency_status(mg.gateway, agents))


async def alerts(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    limit = query_int(request, "limit", default=100, lo=1, hi=1000)
    await mg.alerts.check()
    reader = require_reader(request)
    rows = [a for a in await mg.alerts.recent(limit) if reader.sees_subject(a.subject)]
    return ok({"alerts": await alerts_json(mg.store, rows), "count": len(rows)})


async def test_ai_call(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    gw = mg.gateway
    caller = require_caller(request)
    body = await read_object(request, TEST_CALL_FIELDS)
    name = need_str(body, "ai_name", max_len=64, pattern=NAME)
    prompt = need_str(body, "prompt", max_len=MAX_PROMPT_CHARS)
    preferred = body.get("preferred_provider")
    if preferred is not None:
        if not isinstance(preferred, str):
            raise BadRequest("'preferred_provider' must be a string", param="preferred_provider")
        preferred = provider_arg(gw, preferred)
    model = body.get("model", "auto")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    if caller.agent is not None and caller.agent.name != name and not caller.is_admin:
        raise Forbidden(f"this agent key belongs to {caller.agent.name!r}, not {name!r}")
    agent = mg.agents.get(name)
    chat: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = get_int(body, "max_tokens", lo=1, hi=gw.settings.max_tokens_cap)
    if preferred is not None:
        chat["preferred_provider"] = preferred
    apply_token_cap(agent, chat)
    ctx, pick = await context_for(gw, agent, name)
    ctx = dataclasses.replace(ctx, connected=still_connected(request))
    reason = pick.reason if pick else "most_headroom"
    if preferred is not None:
        ctx = dataclasses.replace(ctx, forced_provider=None)
        reason = "preferred_provider"
    out = await gw.chat(chat, ctx)
    if pick is not None and pick.provider and out.provider != pick.provider and preferred is None:
        reason = "primary_no_headroom"  # the order's provider could not take this request
    choices = out.body.get("choices") or [{}]
    text = (choices[0].get("message") or {}).get("content")
    return ok(
        {
            "ai_name": name,
            "response": text,
            "provider_info": {
                "provider": out.provider,
                "reason": reason,
                "model": out.model,
                "key_id": out.key.id,
                "tokens_used": out.usage.total_tokens,
                "cost_usd": round(out.cost_usd, 6),
                "request_id": out.request_id,
                "attempts": len(out.attempts),
            },
        }
    )


async def reset(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    require_admin(request)
    name = path_name(request, "ai_name")
    agent = await known_agent(mg, name)
    gw = mg.gateway
    if agent is not None:
        await gw.reset_limits(agent.limits)
    await gw.ledger.record_reset(f"agent:{name}", gw.clock.now())
    await mg.alerts.check()
    return ok({"message": f"Token usage reset for {name}", "ai_name": name})


async def history(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    name = own_path_name(request)
    await known_agent(mg, name)
    months = query_int(request, "months", default=6, lo=1, hi=60)
    rows = await token_usage.history(mg.gateway, mg.store, name, months)
    return ok({"ai_name": name, "months": rows})
