"""Who is calling: the admin token, an agent's virtual key, or nobody.

* **Admin token** (``qfadm-…``): created on first start, printed once, only its SHA-256 is
  kept (``<data>/admin_token.sha256``). Every mutating ``/api`` call and every key reveal
  needs it, or an agent key whose agent has ``admin: true``.
* **Agent key** (``qf-…``): identifies an agent on ``/v1`` and ``/api``.
* **trust-local mode** (``quotaflow serve --trust-local``, loopback only): seed 000's
  local tool without auth; every local caller is treated as the admin.

Credentials come as ``Authorization: Bearer <token>`` (what the OpenAI SDKs send) or
``X-Quotaflow-Admin-Token``. A ``qf``-prefixed token that matches nothing is refused
(401) everywhere; any other bearer (an SDK's placeholder key) counts as no credentials.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from quotaflow.agents import AGENT_KEY_PREFIX, Agent
from quotaflow.errors import Forbidden, Unauthorized
from quotaflow.services.access import ADMIN_PREFIX, is_loopback, token_hash
from quotaflow.web.keys import MANAGEMENT

ADMIN_HEADER = "x-quotaflow-admin-token"
AGENT_HEADER = "x-quotaflow-agent"


@dataclass(frozen=True, slots=True)
class Caller:
    kind: str  # "admin" | "agent" | "local" (trust-local mode) | "anonymous"
    agent: Agent | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind in ("admin", "local") or (self.agent is not None and self.agent.is_admin)

    @property
    def is_authorised(self) -> bool:
        """May reserve and reveal a key for its own use (``/api/choose``, ``/api/use``)."""
        return self.kind != "anonymous"


def presented_token(request: web.Request) -> str | None:
    token = request.headers.get(ADMIN_HEADER)
    if token:
        return token.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def caller_of(request: web.Request) -> Caller:
    """Identify the caller; a ``qf``-prefixed token that matches nothing is a 401."""
    mg = request.app[MANAGEMENT]
    token = presented_token(request)
    if token is not None and token.startswith(ADMIN_PREFIX):
        if hmac.compare_digest(token_hash(token), mg.admin_hash):
            return Caller("admin")
        raise Unauthorized("invalid admin token")
    if token is not None and token.startswith(AGENT_KEY_PREFIX):
        agent = mg.agents.by_key(token)
        if agent is None:
            raise Unauthorized("invalid agent key (qf-…): unknown or revoked")
        return Caller("agent", agent)
    if mg.trust_local:
        return Caller("local")
    return Caller("anonymous")


def require_admin(request: web.Request) -> Caller:
    """The caller, if it may change state; else 401 (no credentials) or 403 (no right)."""
    caller = caller_of(request)
    if caller.is_admin:
        return caller
    if caller.kind == "agent":
        raise Forbidden("this agent key has no admin right; use the admin token")
    raise Unauthorized(
        "this call needs the admin token: send 'Authorization: Bearer qfadm-…' "
        "(printed by the first 'quotaflow serve'), or run 'quotaflow serve --trust-local'"
    )


def require_caller(request: web.Request) -> Caller:
    """An admin, an agent key, or any local caller in trust-local mode; else 401."""
    caller = caller_of(request)
    if caller.is_authorised:
        return caller
    raise Unauthorized(
        "this call needs an agent key (qf-…) or the admin token in 'Authorization: Bearer'"
    )


def viewer_of(request: web.Request) -> dict[str, Any]:
    """Who looks at the dashboard: ``{"admin": bool, "mode": …}``; else 401 / 403."""
    mg = request.app[MANAGEMENT]
    caller = caller_of(request)
    if caller.is_admin:
        return {"admin": True, "mode": "trust_local" if caller.kind == "local" else "admin"}
    if mg.gateway.config.server.dashboard_read_only_on_loopback and is_loopback(
        request.remote or ""
    ):
        return {"admin": False, "mode": "read_only"}
    if caller.kind == "agent":
        raise Forbidden("this agent key has no admin right; the dashboard needs the admin token")
    raise Unauthorized(
        "the dashboard needs the admin token (printed by the first 'quotaflow serve'); "
        "or set server.dashboard_read_only_on_loopback: true to view it read-only locally"
    )
