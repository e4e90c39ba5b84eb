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

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from quotaflow.agents import AGENT_KEY_PREFIX, Agent
from quotaflow.errors import Forbidden, Unauthorized
from quotaflow.management import Management

ADMIN_PREFIX = "qfadm-"
ADMIN_HASH_FILE = "admin_token.sha256"
ADMIN_HEADER = "x-quotaflow-admin-token"
AGENT_HEADER = "x-quotaflow-agent"
MANAGEMENT: web.AppKey[Management] = web.AppKey("management", Management)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_admin_token(home: Path | None) -> tuple[str, str | None]:
    """The admin token's hash, and the token itself when it was just created (print it once).

    ``home=None``: a fresh token for this process only (in-process tests)."""
    if home is not None:
        path = home / ADMIN_HASH_FILE
        if path.exists():
            return path.read_text(encoding="ascii").strip(), None
    token = ADMIN_PREFIX + secrets.token_urlsafe(32)
    digest = token_hash(token)
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(home / ADMIN_HASH_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(digest + "\n")
    return digest, token


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
