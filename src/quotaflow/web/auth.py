"""Who is calling: the admin token, an agent's virtual key, or nobody.

* **Admin token** (``qfadm-…``): chosen (``QUOTAFLOW_ADMIN_TOKEN``, ``--admin-token-file``)
  or created on first start and left in ``<data>/admin_token``; only its SHA-256 is kept
  (services/access.py). Every mutating ``/api`` call and every key reveal
  needs it, or an agent key whose agent has ``admin: true``.
* **Agent key** (``qf-…``): identifies an agent on ``/v1`` and ``/api``.
* **trust-local mode** (``quotaflow serve --trust-local``, loopback only): seed 000's
  local tool without auth; every local caller is treated as the admin.

Credentials come as ``Authorization: Bearer <token>`` (what the OpenAI SDKs send),
``X-Quotaflow-Admin-Token``, or the doors' own headers: ``x-api-key`` (Anthropic),
``x-goog-api-key`` or ``?key=`` (Gemini's ``models/…:generateContent`` paths). A
``qf``-prefixed token that matches nothing is refused
(401), except that a wrong admin token on an open read counts as none; any other bearer
(an SDK's placeholder key) counts as no credentials. Failed admin tokens are counted per
client address: past :data:`THROTTLE_LIMIT` in :data:`THROTTLE_WINDOW_S`, every admin
token from that address gets a 429 until the window has passed (the log names the
address, never the token).

Reads (``GET /api/…``) are open on a loopback bind; beyond loopback they need an agent key
or the admin token, except ``/api/health``, ``/livez`` and ``/readyz``. A plain agent key
reads only its own rows. Naming an agent (``X-Quotaflow-Agent``, the OpenAI ``user``) is a
label for calls without a key; naming an agent that has a key needs that key.
"""

from __future__ import annotations

import hmac
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from quotaflow.errors import BadRequest, Forbidden, QuotaflowError, Unauthorized
from quotaflow.runtime import Runtime
from quotaflow.services.access import ADMIN_PREFIX, is_loopback, token_hash
from quotaflow.services.agents import AGENT_KEY_PREFIX, Agent
from quotaflow.web.state import RUNTIME

ADMIN_HEADER = "x-quotaflow-admin-token"
AGENT_HEADER = "x-quotaflow-agent"
THROTTLE_LIMIT = 10  # failed admin tokens per client address …
THROTTLE_WINDOW_S = 60.0  # … within this many seconds, then 429
THROTTLE_CLIENTS = 10_000  # addresses remembered at most (the oldest are forgotten)
OPEN_READS = frozenset({"/api/health", "/livez", "/readyz"})
NAME_MAX = 128  # an agent named by header or ``user``

log = logging.getLogger(__name__)


class TooManyAttempts(QuotaflowError):
    status = 429
    type = "rate_limit_exceeded"
    code = "too_many_admin_token_failures"


class AdminThrottle:
    """Failed admin-token attempts per client address, over a sliding window."""

    def __init__(self) -> None:
        self._fails: dict[str, deque[float]] = {}

    def blocked(self, client: str, now: float) -> bool:
        q = self._fails.get(client)
        if q is None:
            return False
        while q and q[0] <= now - THROTTLE_WINDOW_S:
            q.popleft()
        if not q:
            del self._fails[client]
            return False
        return len(q) >= THROTTLE_LIMIT

    def fail(self, client: str, now: float) -> int:
        """Count one failure; returns the client's failures in the window."""
        q = self._fails.pop(client, None) or deque()
        q.append(now)
        self._fails[client] = q  # most recent last: the oldest client is dropped first
        if len(self._fails) > THROTTLE_CLIENTS:
            del self._fails[next(iter(self._fails))]
        return len(q)


THROTTLE: web.AppKey[AdminThrottle] = web.AppKey("admin_throttle", AdminThrottle)


@dataclass(frozen=True, slots=True)
class Caller:
    kind: str  # "admin" | "agent" | "local" (trust-local mode) | "anonymous"
    agent: Agent | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind in ("admin", "local") or (self.agent is not None and self.agent.is_admin)

    @property
    def is_authorised(self) -> bool:
        """May reserve a key for its own use (``/api/choose``, ``/api/use``)."""
        return self.kind != "anonymous"

    @property
    def own_rows_only(self) -> str | None:
        """The agent whose rows alone this caller reads (a plain agent key), else ``None``."""
        if self.kind == "agent" and self.agent is not None and not self.agent.is_admin:
            return self.agent.name
        return None

    def sees_subject(self, subject: str) -> bool:
        """An agent key sees alerts of keys and providers, and of its own budgets only."""
        own = self.own_rows_only
        if own is None or not subject.startswith("agent:"):
            return True
        return subject.startswith((f"agent:{own}/", f"agent:{own}@"))

    def check_own(self, name: str) -> None:
        """403 unless this caller may read agent ``name``'s rows."""
        own = self.own_rows_only
        if own is not None and own != name:
            raise Forbidden(f"this agent key reads only its own rows ({own!r}), not {name!r}")


CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)  # the reader, once known


def presented_token(request: web.Request) -> str | None:
    token = request.headers.get(ADMIN_HEADER)
    if token:
        return token.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    # The doors' own ways to carry a key: Anthropic's SDKs send ``x-api-key``, Google's
    # ``x-goog-api-key`` or ``?key=`` on the Gemini paths.
    for header in ("x-api-key", "x-goog-api-key"):
        token = request.headers.get(header)
        if token:
            return token.strip()
    if ":" in request.path and request.query.get("key"):
        return request.query["key"].strip()
    return None


def caller_of(request: web.Request, *, open_read: bool = False) -> Caller:
    """Identify the caller; a ``qf``-prefixed token that matches nothing is a 401 (a wrong
    admin token on an ``open_read`` counts as no token)."""
    mg = request.app[RUNTIME]
    token = presented_token(request)
    if token is not None and token.startswith(ADMIN_PREFIX):
        if _admin_token_ok(request, mg, token):
            return Caller("admin")
        if not open_read:
            raise Unauthorized("invalid admin token")
        token = None
    if token is not None and token.startswith(AGENT_KEY_PREFIX):
        agent = mg.agents.by_key(token)
        if agent is None:
            raise Unauthorized("invalid agent key (qf-…): unknown or revoked")
        return Caller("agent", agent)
    if mg.trust_local:
        return Caller("local")
    return Caller("anonymous")


def _admin_token_ok(request: web.Request, mg: Runtime, token: str) -> bool:
    throttle = request.app[THROTTLE]
    client, now = request.remote or "unknown", mg.gateway.clock.now()
    if throttle.blocked(client, now):
        raise TooManyAttempts(
            f"too many wrong admin tokens from {client}: wait a minute",
            headers={"retry-after": str(int(THROTTLE_WINDOW_S))},
        )
    if hmac.compare_digest(token_hash(token), mg.admin_hash):
        return True
    fails = throttle.fail(client, now)
    log.warning("wrong admin token from %s (%d in the last minute)", client, fails)
    return False


def require_reader(request: web.Request) -> Caller:
    """Who reads: anyone on a loopback bind; beyond it an agent key or the admin token."""
    if CALLER in request:
        return request[CALLER]
    mg = request.app[RUNTIME]
    caller = caller_of(request, open_read=True)
    if caller.kind == "anonymous" and not is_loopback(mg.bind_host):
        raise Unauthorized(
            "this server is reachable beyond loopback: reads need an agent key (qf-…) or "
            "the admin token in 'Authorization: Bearer'"
        )
    request[CALLER] = caller
    return caller


def named_agent(
    request: web.Request, caller: Caller, named: str | None, param: str
) -> tuple[Agent | None, str]:
    """The agent a call without a key names (when the operator allows naming), and its name.

    A name is a label (at most :data:`NAME_MAX` printable characters); naming an agent that
    has a key needs that key (or the admin's right), else anyone could spend its budget."""
    if caller.agent is not None:
        return caller.agent, caller.agent.name
    mg = request.app[RUNTIME]
    if not named or not mg.gateway.config.server.allow_agent_header:
        return None, "default"
    if len(named) > NAME_MAX or not named.isprintable():
        raise BadRequest(f"{param} must be at most {NAME_MAX} printable characters", param=param)
    agent = mg.agents.get(named)
    if agent is not None and agent.key_hash is not None and not caller.is_admin:
        raise Unauthorized(
            f"agent {named!r} has a key: send it as 'Authorization: Bearer qf-…' "
            f"instead of naming the agent in {param}"
        )
    return agent, named


def require_admin(request: web.Request) -> Caller:
    """The caller, if it may change state; else 401 (no credentials) or 403 (no right)."""
    caller = caller_of(request)
    if caller.is_admin:
        return caller
    if caller.kind == "agent":
        raise Forbidden("this agent key has no admin right; use the admin token")
    raise Unauthorized(
        "this call needs the admin token: send 'Authorization: Bearer qfadm-…' "
        "(the first 'quotaflow serve' leaves it in <data>/admin_token), or run 'quotaflow serve --trust-local'"
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
    mg = request.app[RUNTIME]
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
        "the dashboard needs the admin token (the first 'quotaflow serve' leaves it in <data>/admin_token); "
        "or set server.dashboard_read_only_on_loopback: true to view it read-only locally"
    )
