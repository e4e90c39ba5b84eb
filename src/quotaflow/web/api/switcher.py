"""Seed 000's API, exactly: ``/api/status``, ``choose``, ``use``, ``add_key``, ``history``,
``force_provider``, ``clear_forced``, ``reset_quota`` (``/api/health`` is in :mod:`.health`).

Reads are open; ``choose`` and ``use`` need an agent key or the admin token; the rest need
the admin token (in ``--trust-local`` mode every local caller has both).
"""

from __future__ import annotations

from aiohttp import web

from quotaflow.errors import BadRequest
from quotaflow.gateway import CallContext
from quotaflow.services import status as quota_status
from quotaflow.services import switcher
from quotaflow.services.agents import Agent, context_for
from quotaflow.web.auth import (
    AGENT_HEADER,
    Caller,
    named_agent,
    require_admin,
    require_caller,
    require_reader,
)
from quotaflow.web.errors import json_response
from quotaflow.web.state import GATEWAY, RUNTIME
from quotaflow.web.validate import (
    NAME,
    get_bool,
    get_int,
    get_str,
    need_str,
    provider_arg,
    query_int,
    read_object,
)

MAX_TOKENS_REPORTED = 100_000_000
NO_STORE = {"cache-control": "no-store"}  # an answer carrying a secret is never cached
MAX_QUOTA = 10**13
# The fields each body takes (seed 000's, and the reservation's on /api/use).
CHOOSE_FIELDS = frozenset({"tokens_estimate"})
USE_FIELDS = frozenset({"provider", "key_id", "reservation_id", "tokens_used", "success", "reason"})
ADD_KEY_FIELDS = frozenset({"provider", "api_key", "quota_total"})
PROVIDER_FIELDS = frozenset({"provider"})


def agent_of(request: web.Request, caller: Caller) -> tuple[Agent | None, str]:
    """The caller's agent: its key's, else the header's (when allowed), else "default"."""
    name = request.headers.get(AGENT_HEADER, "").strip()
    if name and caller.agent is None and not NAME.match(name):
        raise BadRequest(f"{AGENT_HEADER} must be 1 to 64 letters, digits or _.@-")
    return named_agent(request, caller, name, AGENT_HEADER)


async def status(request: web.Request) -> web.Response:
    return json_response(await quota_status.status_document(request.app[GATEWAY]))


async def choose(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    gw = mg.gateway
    caller = require_caller(request)
    body = await read_object(request, CHOOSE_FIELDS)
    tokens = get_int(body, "tokens_estimate", lo=0, hi=gw.settings.max_tokens_cap, required=True)
    agent, name = agent_of(request, caller)
    cap = agent.spec.max_tokens_per_request if agent else None
    if cap is not None and tokens > cap:
        raise BadRequest(
            f"tokens_estimate {tokens} is over agent {name!r}'s cap of {cap} tokens per request",
            param="tokens_estimate",
            code="token_cap",
        )
    ctx, _ = await context_for(gw, agent, name)
    c = await switcher.choose(gw, mg.holds, tokens, ctx)
    # Only the admin (or trust-local mode) receives the provider key itself: an agent with
    # it could call the provider directly, past every budget. An agent gets the key's
    # label and the reservation, and sends its calls through /v1.
    return json_response(
        {
            "success": True,
            "provider": c.provider,
            "api_key": c.key.secret if caller.is_admin else c.key.masked,
            "key_label": c.key.label,
            "remaining_after": quota_status.as_number(c.remaining_after),
            "reason": c.reason,
            "key_id": c.key.id,
            "reservation_id": c.hold.reservation_id,
            "expires_in_s": gw.settings.choose_ttl_s,
            "score": round(c.score, 3),
        },
        headers=NO_STORE if caller.is_admin else None,
    )


async def use(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    gw = mg.gateway
    caller = require_caller(request)
    body = await read_object(request, USE_FIELDS)
    given = get_str(body, "provider", max_len=64)
    key_id = get_str(body, "key_id", max_len=64)
    reservation = get_str(body, "reservation_id", max_len=64)
    if given is None and key_id is None and reservation is None:
        raise BadRequest(
            "'provider' is required (or 'key_id' or 'reservation_id')", param="provider"
        )
    tokens = get_int(body, "tokens_used", lo=0, hi=MAX_TOKENS_REPORTED, required=True)
    ok = get_bool(body, "success", True)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("'reason' must be a string or null", param="reason")
    provider = provider_arg(gw, given) if given is not None else None
    agent, name = agent_of(request, caller)
    ctx = CallContext(agent=name, limits=agent.limits if agent else ())
    key, settled = await switcher.report_use(
        gw,
        mg.holds,
        provider=provider,
        key_id=key_id,
        tokens=tokens,
        success=ok,
        reason=reason,
        ctx=ctx,
        reservation_id=reservation,
        restrict_to=None if caller.is_admin else name,
    )
    return json_response(
        {
            "success": True,
            "message": f"Usage registered for {given or key.provider}",
            "tokens_used": tokens,
            "provider": key.provider,
            "key_id": key.id,
            "settled_reservation": settled,
        }
    )


async def add_key(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    require_admin(request)
    body = await read_object(request, ADD_KEY_FIELDS)
    provider = need_str(body, "provider", max_len=64)
    secret = need_str(body, "api_key", max_len=1024)
    if any(ch.isspace() or ord(ch) < 32 for ch in secret):
        raise BadRequest("'api_key' must not contain spaces or control characters", param="api_key")
    # No quota_total: a key without a quota of its own (the provider's limits still apply).
    quota = get_int(body, "quota_total", lo=1, hi=MAX_QUOTA, default=0)
    added = await mg.keys.add(provider, secret, quota)
    verb = "added" if added.created else "updated"
    return json_response(
        {
            "success": True,
            "message": f"API key {verb} for {added.key.provider}",
            "provider": added.key.provider,
            "key_id": added.key.id,
            "api_key": added.key.masked,
            "quota_total": quota or None,
            "created": added.created,
            "provider_created": added.provider_created,
        }
    )


async def history(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    limit = query_int(request, "limit", default=50, lo=1, hi=1000)
    rows = await switcher.history(gw, limit, require_reader(request).own_rows_only)
    return json_response({"success": True, "history": rows, "count": len(rows)})


async def force_provider(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    require_admin(request)
    body = await read_object(request, PROVIDER_FIELDS)
    provider = provider_arg(mg.gateway, need_str(body, "provider", max_len=64))
    await mg.set_forced(provider)
    return json_response(
        {
            "success": True,
            "message": f"Provider {provider} forced",
            "forced_provider": provider,
        }
    )


async def clear_forced(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    require_admin(request)
    await read_object(request, (), optional=True)
    await mg.set_forced(None)
    return json_response(
        {
            "success": True,
            "message": "Forced provider cleared",
            "forced_provider": None,
        }
    )


async def reset_quota(request: web.Request) -> web.Response:
    mg = request.app[RUNTIME]
    require_admin(request)
    body = await read_object(request, PROVIDER_FIELDS)
    provider = provider_arg(mg.gateway, need_str(body, "provider", max_len=64))
    keys = await mg.gateway.reset_provider(provider)
    await mg.alerts.check()
    return json_response(
        {
            "success": True,
            "message": f"Quota reset for {provider}",
            "provider": provider,
            "keys_reset": [k.id for k in keys],
        }
    )
