"""Agents (seed 003's ``ai_name``): who calls, with which budgets, in which provider order.

An agent is identified by a virtual key (``qf-…``; only its SHA-256 is stored) or, where
the operator allows it, by name (``X-Quotaflow-Agent`` or the OpenAI ``user`` field). Its
budgets, request-rate limits and per-provider budgets become :class:`Limit` objects in the
scopes ``agent:<name>`` and ``agent:<name>@<provider>``; the gateway reserves them
atomically with the key's limits. Its provider order is primary → fallbacks: the first
provider whose share is under ``switch_threshold`` (the last one: under 100 %) is put first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from quotaflow.clock import Clock
from quotaflow.engine.limits import Limit
from quotaflow.engine.tokens import estimate_prompt_tokens
from quotaflow.engine.windows import Window, parse_window
from quotaflow.errors import BadRequest, Conflict
from quotaflow.gateway import CallContext, Gateway
from quotaflow.services.status import provider_statuses
from quotaflow.storage.management import ManagementStore

if TYPE_CHECKING:  # the pydantic schema loads with the configuration
    from quotaflow.config.schema import AgentSpec

AGENT_KEY_PREFIX = "qf-"

log = logging.getLogger("quotaflow.services.agents")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_agent_key() -> str:
    return AGENT_KEY_PREFIX + secrets.token_urlsafe(32)


def agent_limits(spec: AgentSpec) -> tuple[Limit, ...]:
    """The agent's budgets and rate limits as engine limits."""
    out: dict[str, Limit] = {}
    for b in spec.budgets:
        scope = f"agent:{spec.name}" + (f"@{b.provider}" if b.provider else "")
        lim = Limit.make(scope, b.metric, parse_window(b.window), b.amount)
        out[lim.id] = lim
    scope = f"agent:{spec.name}"
    if spec.requests_per_minute is not None:
        lim = Limit.make(scope, "requests", Window("rolling", 60.0), spec.requests_per_minute)
        out[lim.id] = lim
    if spec.requests_per_day is not None:
        lim = Limit.make(scope, "requests", Window("day"), spec.requests_per_day)
        out[lim.id] = lim
    return tuple(out.values())


@dataclass(frozen=True, slots=True)
class Agent:
    spec: AgentSpec
    key_hash: str | None
    source: str  # "config" | "api"
    limits: tuple[Limit, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_admin(self) -> bool:
        return self.spec.admin

    def to_json(self) -> dict[str, object]:
        d = self.spec.model_dump(exclude={"key"})
        d["source"] = self.source
        d["has_key"] = self.key_hash is not None
        d["limits"] = [lim.id for lim in self.limits]
        return d


class AgentRegistry:
    """The agents of the YAML and of the admin API; looked up by name or by virtual key."""

    def __init__(self, store: ManagementStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._by_name: dict[str, Agent] = {}
        self._by_hash: dict[str, Agent] = {}
        self._lock = asyncio.Lock()  # a restore never interleaves with a create or delete

    def _put(self, agent: Agent) -> None:
        old = self._by_name.get(agent.name)
        if old is not None and old.key_hash:
            self._by_hash.pop(old.key_hash, None)
        self._by_name[agent.name] = agent
        if agent.key_hash:
            self._by_hash[agent.key_hash] = agent

    def load_config(self, specs: tuple[AgentSpec, ...]) -> None:
        for spec in specs:
            self._put(
                Agent(spec, hash_key(spec.key) if spec.key else None, "config", agent_limits(spec))
            )

    async def restore(self) -> list[Agent]:
        """Bring the agents of the admin API in line with the store (idempotent: run at
        start, and again when another replica changed the shared store): add new ones,
        replace changed ones, drop deleted ones. The YAML's agents always win. Returns the
        agents added or changed."""
        from quotaflow.config.schema import AgentSpec

        async with self._lock:
            stored = await self.store.stored_agents()
            changed: list[Agent] = []
            for name, key_hash, spec_json in stored:
                old = self._by_name.get(name)
                if old is not None and old.source == "config":
                    continue  # the YAML wins
                spec = AgentSpec.model_validate(orjson.loads(spec_json))
                if old is not None and old.key_hash == key_hash and old.spec == spec:
                    continue
                agent = Agent(spec, key_hash, "api", agent_limits(spec))
                self._put(agent)
                changed.append(agent)
            names = {name for name, _, _ in stored}
            for agent in [a for a in self._by_name.values() if a.source == "api"]:
                if agent.name not in names:
                    self._drop(agent)
            return changed

    def _drop(self, agent: Agent) -> None:
        self._by_name.pop(agent.name, None)
        if agent.key_hash:
            self._by_hash.pop(agent.key_hash, None)

    def get(self, name: str) -> Agent | None:
        return self._by_name.get(name)

    def by_key(self, key: str) -> Agent | None:
        digest = hash_key(key)
        agent = self._by_hash.get(digest)
        if agent is None or agent.key_hash is None:
            return None
        return agent if hmac.compare_digest(agent.key_hash, digest) else None

    def all(self) -> list[Agent]:
        return list(self._by_name.values())

    async def create(self, spec: AgentSpec) -> tuple[Agent, str]:
        """Create an agent of the admin API; returns it and its new key (shown this once).

        A name already taken (in the YAML, here, or by a replica sharing the store) is
        refused with :class:`Conflict` and nothing changes: the agent keeps its budgets and
        its key. Of concurrent creates of one name, exactly one wins."""
        key = new_agent_key()
        spec = spec.model_copy(update={"key": None})
        digest = hash_key(key)
        agent = Agent(spec, digest, "api", agent_limits(spec))
        spec_json = orjson.dumps(spec.model_dump()).decode()
        async with self._lock:
            self._refuse_taken(spec.name)
            if not await self.store.add_agent(spec.name, digest, spec_json, self.clock.now()):
                raise agent_exists(spec.name)  # added by another replica, not yet synced here
            self._put(agent)
        log.info("agent %s created", spec.name, extra={"fields": {"event": "agent_created"}})
        return agent, key

    def _refuse_taken(self, name: str) -> None:
        old = self._by_name.get(name)
        if old is not None and old.source == "config":
            raise Conflict(
                f"agent {name!r} is declared in the configuration file; change it there",
                code="configured_agent",
            )
        if old is not None:
            raise agent_exists(name)

    async def delete(self, name: str) -> Agent:
        agent = self._by_name.get(name)
        if agent is None:
            raise BadRequest(f"unknown agent {name!r}", code="unknown_agent")
        if agent.source == "config":
            raise BadRequest(
                f"agent {name!r} is declared in the configuration file; remove it there",
                code="configured_agent",
            )
        async with self._lock:
            await self.store.delete_agent(name)
            self._drop(agent)
        log.info("agent %s deleted", name, extra={"fields": {"event": "agent_deleted"}})
        return agent


def agent_exists(name: str) -> Conflict:
    """The refusal of a second agent of one name: it would replace the first one's budgets
    and revoke its key. There is no in-place change: delete, then create again."""
    return Conflict(
        f"agent {name!r} exists already (its budgets and key are unchanged); to change it, "
        f"delete it (DELETE /api/agents/{name}) and create it again: it then gets a new key",
        code="agent_exists",
    )


# -- provider order (seed 003) -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProviderPick:
    provider: str | None  # None: every provider of the order is exhausted
    reason: (
        str  # primary_available | fallback_threshold_reached | all_exhausted | no_provider_order
    )
    shares: dict[str, float]  # used share per provider of the order (0 … ≥1)


def order_of(gw: Gateway, agent: Agent | None) -> tuple[list[str], float]:
    """The provider order and switch threshold of a caller: its agent's own, else the
    settings' default (seed 003's ENABLE_OPENAI_FALLBACK), configured providers only."""
    if agent is not None and agent.spec.providers:
        return agent.spec.providers, agent.spec.switch_threshold
    s = gw.settings
    return [p for p in s.provider_order if p in gw.config.providers], s.switch_threshold


async def provider_shares(
    gw: Gateway, agent: Agent | None, order: list[str] | None = None
) -> dict[str, float]:
    """Per provider of the order (default: the agent's): the agent's used share there (its
    per-provider budgets when it has some, else the provider's own quotas)."""
    order = order if order is not None else (agent.spec.providers if agent is not None else [])
    if not order:
        return {}  # no order to follow: the quota rows of every provider are not needed
    now = gw.clock.now()
    limits = agent.limits if agent is not None else ()
    usages = await gw.counters.snapshot(limits, now)
    rows = {r.provider: r for r in await provider_statuses(gw)}
    out: dict[str, float] = {}
    for p in order:
        own = [usages[lim.id].used_share for lim in limits if lim.scope.endswith(f"@{p}")]
        row = rows.get(p)
        provider_share = (row.used_pct / 100.0 if row.available else 1.0) if row else 1.0
        out[p] = max([*own, provider_share]) if own else provider_share
    return out


def pick_provider(
    agent: Agent | None,
    shares: dict[str, float],
    order: list[str] | None = None,
    threshold: float | None = None,
) -> ProviderPick:
    """Primary while under the threshold, then each fallback in turn (the last up to 100 %).
    ``order`` and ``threshold`` replace the agent's own (the settings' default order)."""
    if order is None:
        order = agent.spec.providers if agent is not None else []
    if threshold is None:
        threshold = agent.spec.switch_threshold if agent is not None else 1.0
    if not order:
        return ProviderPick(None, "no_provider_order", shares)
    for i, p in enumerate(order):
        ceiling = threshold if i < len(order) - 1 else 1.0
        if shares.get(p, 1.0) < ceiling:
            reason = "primary_available" if i == 0 else "fallback_threshold_reached"
            return ProviderPick(p, reason, shares)
    return ProviderPick(None, "all_exhausted", shares)


async def context_for(
    gw: Gateway,
    agent: Agent | None,
    name: str,
    door: str = "library",
    traceparent: str | None = None,
) -> tuple[CallContext, ProviderPick | None]:
    """The call context of a caller: its agent's limits and the provider its order (the
    agent's, else the settings' default order) puts first; ``door`` and ``traceparent`` as
    the request came."""
    order, threshold = order_of(gw, agent)
    if agent is None and not order:
        return CallContext(name[:128], (), None, door, traceparent), None
    pick = pick_provider(agent, await provider_shares(gw, agent, order), order, threshold)
    limits = agent.limits if agent is not None else ()
    who = agent.name if agent is not None else name[:128]
    return CallContext(who, limits, pick.provider, door, traceparent), pick


def apply_token_cap(agent: Agent | None, body: object) -> None:
    """Seed 003's per-request token cap: refuse a larger ``max_tokens``; a missing one becomes
    ``default_max_tokens`` (seed 003: 1,024), within the cap."""
    if agent is None or agent.spec.max_tokens_per_request is None or not isinstance(body, dict):
        return
    cap = agent.spec.max_tokens_per_request
    asked = [body.get(n) for n in ("max_tokens", "max_completion_tokens")]
    asked_ints = [a for a in asked if isinstance(a, int) and not isinstance(a, bool)]
    prompt = estimate_prompt_tokens(body)
    if prompt >= cap:
        raise BadRequest(
            f"the prompt (~{prompt} tokens) is over agent {agent.name!r}'s cap of {cap} tokens per request",
            param="messages",
            code="token_cap",
        )
    for a in asked_ints:
        if prompt + a > cap:
            raise BadRequest(
                f"max_tokens {a} + prompt ~{prompt} is over agent {agent.name!r}'s cap of {cap} tokens per request",
                param="max_tokens",
                code="token_cap",
            )
    if not asked_ints:
        default = agent.spec.default_max_tokens
        body["max_tokens"] = cap - prompt if default is None else min(cap - prompt, default)
