"""The orchestrator: choose → reserve → call the adapter → settle → ledger, with fallback.

One :class:`Gateway` serves every surface (the ``/v1`` proxy, the ``/api`` advisory API,
the in-process library). Per attempt:

1. take a snapshot of every limit the route touches and build the candidates
   (:mod:`quotaflow.engine.candidates`), ranked by the strategy and the overrides;
2. atomically reserve the best candidate's worst case on all its limits (a lost race
   moves on to the next candidate);
3. journal a pending ledger row (durable), call the provider;
4. settle the reservation with the provider-reported usage, finalize the ledger row
   (durable) and only then release the answer.

A retryable failure (429, 5xx, timeout, refused connection, dead key) moves on to the next
candidate, up to ``max_attempts``; a client error is returned as is. When no candidate has
headroom the gateway waits up to ``max_wait_s`` for the earliest window to free, else answers
429 naming the full limits and when the first frees.

The work is done by the parts it owns — :mod:`~quotaflow.gateway.keyring` (keys and health),
:mod:`~quotaflow.gateway.picking`, :mod:`~quotaflow.gateway.attempts`,
:mod:`~quotaflow.gateway.booking` (the one way use enters the ledger) and
:mod:`~quotaflow.gateway.learning`; this class holds their lifecycle and the public verbs.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import UpstreamFailure
from quotaflow.adapters.doors.embeddings import EmbeddingsDoor, parse_embedding_request
from quotaflow.adapters.doors.wrap import Door
from quotaflow.clock import Clock, SystemClock
from quotaflow.config.model import Config
from quotaflow.engine import health as hl
from quotaflow.engine.candidates import Rejection, RequestFacts
from quotaflow.engine.catalog import Deployment, Key, Provider, Route
from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.stats import ModelStats, Outcome, SessionTotals
from quotaflow.engine.strategies import Scored
from quotaflow.engine.tokens import estimate_prompt_tokens
from quotaflow.errors import BadRequest, ClientGone, NotFound, QuotaflowError
from quotaflow.gateway.attempts import Attempts
from quotaflow.gateway.booking import Booking
from quotaflow.gateway.health_sync import HealthSync
from quotaflow.gateway.keyring import Keyring
from quotaflow.gateway.learning import Learning
from quotaflow.gateway.outcomes import CallContext, ChatOutcome
from quotaflow.gateway.picking import Picker, Sleep
from quotaflow.gateway.request import ChatRequest, parse_chat_request
from quotaflow.gateway.streaming import ActiveStream
from quotaflow.gateway.upstream import make_client
from quotaflow.httpclient import Transport
from quotaflow.observability.observer import Observer
from quotaflow.storage.base import CounterStore, LedgerRow
from quotaflow.storage.counters.memory import MemoryCounterStore
from quotaflow.storage.counters.rebuild import Disagreement, attach_shared
from quotaflow.storage.health.base import HealthStore
from quotaflow.storage.ledger import Ledger
from quotaflow.types import ErrorKind, Usage


class Gateway:
    """The engine behind every surface. ``await start()`` before use, ``await close()`` after."""

    def __init__(
        self,
        config: Config,
        *,
        ledger: Ledger,
        counters: CounterStore | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        http: Transport | None = None,
        health_store: HealthStore | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.settings = config.settings
        self.ledger = ledger
        self.counters: CounterStore = counters or MemoryCounterStore(config.tz)
        self.clock = clock or SystemClock()
        self._http = http
        self._own_http = http is None
        # Logs, metrics and spans of every request (QUOTAFLOW_METRICS, OTEL_* say which).
        self.observer = observer or Observer.from_env(self.clock)
        self.keyring = Keyring(config, self.clock, health_store)
        self.keys = self.keyring.keys
        self.health = self.keyring.health
        self.forced_provider: str | None = None
        for p in config.providers.values():
            adapter_for(p.protocol)  # import each configured protocol's adapter now
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()
        self.started_at: float | None = None
        self.crashed_on_start = 0
        self.counter_disagreements: list[Disagreement] = []  # shared counters vs the ledger
        self.in_flight = 0  # plain requests being answered
        self.open_streams: weakref.WeakSet[ActiveStream] = weakref.WeakSet()
        self.learning = Learning(self.keyring, ledger, self.clock, self.settings)
        self.picker = Picker(
            config,
            self.keyring,
            self.counters,
            self.learning.model_stats,
            self.clock,
            rng or random.Random(),
            sleep,
        )
        self.booking = Booking(
            config,
            self.keyring,
            self.learning,
            ledger,
            self.counters,
            self.clock,
            self.new_request_id,
            self.observer,
        )
        self.attempts = Attempts(
            config,
            self.picker,
            self.booking,
            self.clock,
            lambda: self.http,
            self.new_request_id,
            self.observer,
        )
        self.picker.on_wait = self.observer.waited
        metrics = self.observer.metrics
        if metrics is not None:
            ledger.on_commit = metrics.ledger_commit.observe

    @property
    def rng(self) -> random.Random:
        return self.picker.rng

    @property
    def health_sync(self) -> HealthSync | None:
        """Key health shared with the other replicas (Redis counters only)."""
        return self.keyring.sync

    @property
    def changes(self) -> int:
        """Bumped on every booked use and operator action, so watchers (the dashboard's
        event stream) can tell cheaply whether anything changed."""
        return self.keyring.changes

    @property
    def model_stats(self) -> dict[tuple[str, str], ModelStats]:
        return self.learning.model_stats

    @property
    def session_totals(self) -> SessionTotals:
        return self.learning.session_totals

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, *, settle: bool = True) -> None:
        """Open the storage and the HTTP client; ``settle``: book what a crash left pending
        (not from a tool beside a running server on an embedded ledger)."""
        await self.ledger.open()
        if settle:
            self.crashed_on_start = await self.ledger.settle_crashed()
        if self.counters.shared:  # Redis: other replicas keep them
            self.counter_disagreements = await attach_shared(
                self.counters, self.ledger, self.all_limits, self.clock.now(), self.config.tz
            )
        else:
            await self.rebuild_counters()
        await self.restore_model_stats()
        if self._http is None:
            self._http = make_client(
                self.settings.connect_timeout_s,
                proxy=self.settings.proxy,
                kind=self.settings.http_client,
            )
        self.started_at = self.clock.now()
        if self.health_sync is not None:
            self.health_sync.start()

    async def close(self) -> None:
        if self.health_sync is not None:
            await self.health_sync.close()
        if self._http is not None and self._own_http:
            await self._http.close()
        await self.save_model_stats()
        self.observer.close()
        await self.ledger.close()
        await self.counters.close()

    @property
    def http(self) -> Transport:
        if self._http is None:
            raise RuntimeError("the gateway is not started")
        return self._http

    def all_limits(self) -> list[Limit]:
        return self.keyring.all_limits()

    async def rebuild_counters(self, limits: Iterable[Limit] | None = None) -> None:
        """Recount every limit's current window from the ledger (the source of truth)."""
        chosen = list(limits) if limits is not None else self.all_limits()
        await self.counters.adopt(chosen, self.ledger, self.clock.now())

    def new_request_id(self) -> str:
        return f"qf-{self._id_prefix}-{next(self._ids):x}"

    # -- requests ------------------------------------------------------------------------
    def parse(self, body: Any) -> ChatRequest:
        return parse_chat_request(
            body,
            max_tokens_cap=self.settings.max_tokens_cap,
            known_providers=frozenset(self.config.providers),
        )

    def route_for(self, req: ChatRequest) -> Route:
        """The request's route: its model's, unless a complexity hint picks the tier; with
        ``settings.unpriced: refuse``, without the models that have no known price."""
        route = self.resolve_route(req.model)
        if req.complexity:
            route = self.config.tier_route(req.complexity, route)
        if self.settings.unpriced == "refuse":
            priced = tuple(d for d in route.deployments if not d.model.price.estimated)
            if not priced:
                raise BadRequest(
                    f"The model '{req.model}' has no known price and settings.unpriced is "
                    "'refuse': give it input/output prices under the provider's models",
                    param="model",
                    code="unpriced_model",
                )
            if len(priced) < len(route.deployments):
                route = replace(route, deployments=priced)
        return route

    def resolve_route(self, model: str) -> Route:
        route = self.config.route(model)
        if route is None:
            takes = "; ".join(
                f"{p}: {', '.join(pats)}" for p, pats in self.config.pass_through().items()
            )
            served = (
                f"configured providers take {takes}" if takes else "no provider takes other names"
            )
            raise NotFound(
                f"The model '{model}' is not served here: no configured provider takes it "
                f"({served}; or name one as provider/model, a catalog model, a route or "
                "'auto': see GET /v1/models)",
                param="model",
            )
        return route

    def facts(self, req: ChatRequest, ctx: CallContext) -> RequestFacts:
        return RequestFacts(
            prompt_tokens=estimate_prompt_tokens(req.body)
            if req.prompt_tokens is None
            else req.prompt_tokens,
            max_tokens=req.max_tokens,
            complexity=req.complexity,
            preferred_provider=req.preferred_provider,
            forced_provider=ctx.forced_provider or self.forced_provider,
            agent=ctx.agent,
            min_completion_tokens=self.settings.min_completion_tokens,
            choices=req.choices,
        )

    async def candidates(
        self,
        route: Route,
        facts: RequestFacts,
        ctx: CallContext,
        exclude: Iterable[tuple[str, str]] = (),
        deployments: Sequence[Deployment] | None = None,
        *,
        planned: bool = True,
    ) -> tuple[list[Scored], list[Rejection], dict[str, LimitUsage]]:
        """Ranked candidates for a request now (see :meth:`Picker.candidates`)."""
        return await self.picker.candidates(
            route, facts, ctx, exclude, deployments, planned=planned
        )

    async def chat(
        self, body: Any, ctx: CallContext | None = None, *, door: Door | None = None
    ) -> ChatOutcome:
        """A non-streaming chat completion routed across keys with fallback; through ``door``
        the answer comes in that door's protocol."""
        req = self.parse(body)
        if req.stream:
            raise BadRequest("use open_stream() for stream=true", param="stream")
        req.door = door
        return await self._answer(req, ctx or CallContext())

    async def embed(self, body: Any, ctx: CallContext | None = None) -> ChatOutcome:
        """``/v1/embeddings``: routed, reserved, booked and fallen back like a chat."""
        er = parse_embedding_request(body)
        req = ChatRequest(
            {}, er.model, False, False, 1, None, None, None,
            door=EmbeddingsDoor(er), prompt_tokens=er.prompt_estimate,
        )  # fmt: skip
        return await self._answer(req, ctx or CallContext())

    async def _answer(self, req: ChatRequest, ctx: CallContext) -> ChatOutcome:
        route = self.route_for(req)
        self.in_flight += 1
        try:
            outcome, attempts, pick = await self.attempts.run(req, ctx, route, self.facts(req, ctx))
            assert isinstance(outcome, ChatOutcome)
            outcome.attempts = attempts
            outcome.why = pick.scored.breakdown
            self.session_totals.book(True, outcome.usage.total_tokens)
            return outcome
        except ClientGone:
            raise  # not counted, as a request cancelled while it waits is not
        except QuotaflowError:
            self.session_totals.book(False)
            raise
        finally:
            self.in_flight -= 1

    async def open_stream(
        self, body: Any, ctx: CallContext | None = None, *, door: Door | None = None
    ) -> ActiveStream:
        """Route a ``stream: true`` request; returns once the first chunk is in hand.

        Fallback is possible until then; afterwards the stream belongs to one attempt.
        Through ``door`` the stream comes in that door's protocol.
        """
        ctx = ctx or CallContext()
        req = self.parse(body)
        if not req.stream:
            raise BadRequest("open_stream() needs stream=true", param="stream")
        req.door = door
        route = self.route_for(req)
        try:
            stream, attempts, _ = await self.attempts.run(req, ctx, route, self.facts(req, ctx))
        except ClientGone:
            raise
        except QuotaflowError:
            self.session_totals.book(False)
            raise
        assert isinstance(stream, ActiveStream)
        stream.attempts = attempts
        self.open_streams.add(stream)
        return stream

    @property
    def busy(self) -> int:
        """Requests being answered now: plain ones and streams still open."""
        return self.in_flight + sum(1 for s in self.open_streams if s.outcome == "open")

    def interrupt_streams(self, reason: str) -> int:
        """End every open stream with an SSE error event naming ``reason`` (each is billed
        for what it delivered); returns how many there were."""
        failure = UpstreamFailure(ErrorKind.CONNECTION, None, reason)
        open_now = [s for s in self.open_streams if s.outcome == "open"]
        for s in open_now:
            s.interrupt(failure)
        return len(open_now)

    # -- operator actions ----------------------------------------------------------------
    def enable_key(self, key_id: str) -> None:
        self.keyring.enable_key(key_id)

    def disable_key(self, key_id: str, reason: str = "disabled by an operator") -> None:
        """Stop routing to a key until :meth:`enable_key` (in memory: a restart forgets it)."""
        self.keyring.disable_key(key_id, reason)

    def add_provider(self, provider: Provider, routes: dict[str, Route]) -> None:
        """Serve a provider created at runtime; ``routes`` replace only implicit routes."""
        self.keyring.add_provider(provider, routes)

    def add_key(self, key: Key) -> None:
        """Start routing to ``key`` (or replace the key of the same id)."""
        self.keyring.add_key(key)

    def remove_key(self, key_id: str) -> Key | None:
        """Stop routing to a key and drop its counters; in-flight requests on it finish
        normally (the ledger keeps its usage under its id, which no key takes again)."""
        key = self.keyring.remove_key(key_id)
        if key is not None:
            self.counters.forget(key.limits)
        return key

    def provider_keys(self, provider: str) -> list[Key]:
        return self.keyring.provider_keys(provider)

    async def reset_limits(self, limits: Iterable[Limit]) -> None:
        """Seed 000's reset: usage of these limits' scopes before now no longer counts."""
        limits = list(limits)
        now = self.clock.now()
        for scope in sorted({lim.scope for lim in limits}):
            await self.ledger.record_reset(scope, now)
        await self.counters.reset(limits, now)
        self.keyring.changes += 1

    async def reset_provider(self, provider: str) -> list[Key]:
        """Reset every limit of a provider and its keys, and clear their depleted state."""
        keys = self.provider_keys(provider)
        p = self.config.providers.get(provider)
        limits = [lim for k in keys for lim in k.limits] + list(p.limits if p else ())
        await self.reset_limits(limits)
        for k in keys:
            self.keyring.replenish(k.id)
            await self.booking.forget_depleted(k)
        return keys

    # -- key tester, quality feedback, per key × model stats -----------------------------
    def key_model_stats(self) -> dict[tuple[str, str], ModelStats]:
        """Seed 004's per key × model statistics, by ``(key_id, model)``."""
        return self.learning.model_stats

    def stats_for(self, key_id: str, model: str) -> ModelStats:
        """The statistics record of one key × model (created empty)."""
        return self.learning.stats_for(key_id, model)

    async def record_probe(
        self,
        key_id: str,
        model: str,
        ok: bool,
        latency_ms: float | None,
        error: UpstreamFailure | None = None,
        usage: Usage | None = None,
    ) -> LedgerRow:
        """Book a key-tester call (see :meth:`Booking.probed`)."""
        failure = None if ok else error or UpstreamFailure(ErrorKind.CONNECTION, None, "failed")
        return await self.booking.probed(self.keys[key_id], model, latency_ms, failure, usage)

    def record_quality(
        self, provider: str, model: str, success: bool, score: float
    ) -> list[ModelStats]:
        """Seed 004's ``updateQualityScore`` (see :meth:`Learning.record_quality`)."""
        return self.learning.record_quality(provider, model, success, score)

    async def record_feedback(
        self,
        score: float,
        *,
        success: bool = True,
        request_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> list[ModelStats]:
        """Quality feedback on a task, by ``request_id`` or by ``provider`` + ``model``.
        Future choices of ``learned`` and ``bandit`` move with it. Returns the records changed."""
        return await self.learning.record_feedback(
            score, success=success, request_id=request_id, provider=provider, model=model
        )

    async def restore_probe_health(self, since: float | None = None) -> int:
        """Apply the latest key-tester result of each key × model from the ledger: a key
        found dead stays disabled, an empty one depleted; returns how many were applied."""
        rows = await self.ledger.probe_results(since)
        now = self.clock.now()
        for r in rows:
            if r.key_id not in self.keys:
                continue
            s = self.stats_for(r.key_id, r.model)
            if s.last_used is None or s.last_used < r.ts:  # not in the saved statistics yet
                outcome = Outcome(
                    r.status == "ok",
                    r.latency_ms,
                    tokens=r.total_tokens,
                    error_kind=r.error_kind,
                    error=r.detail,
                )
                self.learning.observe(r.key_id, r.model, r.ts, outcome)
            h = self.keyring.health_of(r.key_id)
            if r.error_kind == ErrorKind.AUTH.value:
                h.disabled_reason = f"{hl.INVALID_PREFIX}{(r.detail or '')[:200]} (key tester)"
            elif r.error_kind == ErrorKind.QUOTA_EXHAUSTED.value:
                h.depleted_until = self.booking.depleted_until(self.keys[r.key_id], now)
        return len(rows)

    def session_summary(self) -> dict[str, Any]:
        """Seed 004's ``getSessionSummary()`` since the engine was made: ``requests``,
        ``successes``, ``failures``, ``totalTokens``, ``successRate``."""
        return self.learning.session_summary()

    async def restore_model_stats(self) -> int:
        return await self.learning.restore()

    async def save_model_stats(self) -> int:
        return await self.learning.save()
