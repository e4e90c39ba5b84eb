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
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import CallTarget, MalformedResponse, UpstreamFailure
from quotaflow.chat_request import ChatRequest, parse_chat_request
from quotaflow.clock import Clock, SystemClock
from quotaflow.config.model import Config
from quotaflow.engine import health as hl
from quotaflow.engine import stats as st
from quotaflow.engine.candidates import (
    Candidate,
    Rejection,
    RequestFacts,
    build_candidates,
    plan_candidate,
    screen_candidates,
)
from quotaflow.engine.catalog import Deployment, Key, Provider, Route
from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.reservation import Plan
from quotaflow.engine.stats import ModelStats, Outcome, SessionTotals
from quotaflow.engine.strategies import Scored, rank
from quotaflow.engine.tokens import estimate_prompt_tokens
from quotaflow.engine.windows import next_reset, parse_window, window_start
from quotaflow.errors import (
    BadRequest,
    NotFound,
    QuotaExhausted,
    QuotaflowError,
    UnsupportedByProtocol,
    UpstreamError,
)
from quotaflow.health_sync import HealthSync
from quotaflow.httpclient import Transport
from quotaflow.observability.observer import Observer
from quotaflow.storage.base import CounterStore, LedgerRow, LedgerStore
from quotaflow.storage.health_store import HealthStore
from quotaflow.storage.memory import MemoryCounterStore
from quotaflow.storage.rebuild import Disagreement, attach_shared
from quotaflow.storage.stats_store import StatsStore
from quotaflow.streaming import ActiveStream
from quotaflow.types import ErrorKind, Measure, Usage
from quotaflow.upstream import TRANSPORT_ERRORS, make_client, open_stream, send, transport_failure

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")
log = logging.getLogger("quotaflow.gateway")


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling and what extra limits apply (an agent's budgets)."""

    agent: str = "default"
    limits: tuple[Limit, ...] = ()
    forced_provider: str | None = None  # overrides the gateway-wide forced provider


@dataclass(slots=True)
class Attempt:
    provider: str
    key_id: str
    model: str
    outcome: str
    error_kind: str | None = None
    http_status: int | None = None
    message: str | None = None


@dataclass(slots=True)
class ChatOutcome:
    body: dict[str, Any]
    usage: Usage
    cost_usd: float
    provider: str
    key: Key
    model: str
    route: str
    request_id: str
    attempts: list[Attempt]
    why: dict[str, float] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return routing_headers(
            self.request_id, self.provider, self.key, self.model, self.route, len(self.attempts)
        )


def routing_headers(
    rid: str, provider: str, key: Key, model: str, route: str, attempts: int
) -> dict[str, str]:
    return {
        "x-quotaflow-request-id": rid,
        "x-quotaflow-provider": provider,
        "x-quotaflow-key": key.label,
        "x-quotaflow-model": model,
        "x-quotaflow-route": route,
        "x-quotaflow-attempts": str(attempts),
    }


@dataclass(slots=True)
class _Pick:
    scored: Scored
    reservation_id: str

    @property
    def candidate(self) -> Candidate:
        return self.scored.candidate

    @property
    def plan(self) -> Plan:
        plan = self.scored.candidate.plan
        assert plan is not None  # a pick is always planned
        return plan


# One attempt of a request: (route, request id, attempt number, pick, deadline, can fall back).
_AttemptFn = Callable[[Route, str, int, _Pick, float, bool], Awaitable[_T | UpstreamFailure]]


class Gateway:
    """The engine behind every surface. ``await start()`` before use, ``await close()`` after."""

    def __init__(
        self,
        config: Config,
        *,
        ledger: LedgerStore,
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
        self.rng = rng or random.Random()
        self._sleep = sleep
        self._http = http
        self._own_http = http is None
        # Logs, metrics and spans of every request (QUOTAFLOW_METRICS, OTEL_* say which).
        self.observer = observer or Observer.from_env(self.clock)
        self.keys: dict[str, Key] = {k.id: k for k in config.keys}
        self.health: dict[str, hl.Health] = {k: hl.Health() for k in self.keys}
        # issue 8: key health shared with the other replicas (Redis counters only)
        self.health_sync = (
            HealthSync(health_store, self.health, self.clock) if health_store is not None else None
        )
        self.forced_provider: str | None = None
        self._by_provider: dict[str, list[Key]] = {}
        self._route_limit_cache: dict[str, list[Limit]] = {}
        self._reindex()
        for p in config.providers.values():
            adapter_for(
                p.protocol
            )  # import each configured protocol's adapter now, not mid-request
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()
        self.started_at: float | None = None
        self.counter_disagreements: list[Disagreement] = []  # shared counters vs the ledger
        self.in_flight = 0
        # issue 7: per key × model statistics (what "learned"/"bandit" rank on) and seed 004's
        # session summary; the statistics are saved to the ledger's StatsStore now and then.
        self.model_stats: dict[tuple[str, str], ModelStats] = {}
        self.session_totals = SessionTotals()
        self._stats_dirty: set[tuple[str, str]] = set()
        self._stats_saved_at: float | None = None
        self._stats_task: asyncio.Task[None] | None = None
        # issue 6: bumped on every settled attempt and operator action, so watchers (the
        # dashboard's event stream) can tell cheaply whether anything changed.
        self.changes = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self.ledger.open()
        crashed = await self.ledger.settle_crashed()
        self.crashed_on_start = crashed
        if getattr(self.counters, "shared", False):  # Redis: other replicas keep them (issue 8)
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
        await self.ledger.close()
        close_counters = getattr(self.counters, "close", None)
        if close_counters is not None:  # shared counters hold connections (issue 8)
            await close_counters()

    @property
    def http(self) -> Transport:
        if self._http is None:
            raise RuntimeError("the gateway is not started")
        return self._http

    def _reindex(self) -> None:
        by: dict[str, list[Key]] = {}
        for k in self.keys.values():
            by.setdefault(k.provider, []).append(k)
        self._by_provider = by
        self._route_limit_cache = {}

    def all_limits(self) -> list[Limit]:
        out: dict[str, Limit] = {}
        for k in self.keys.values():
            out.update((lim.id, lim) for lim in k.limits)
        for p in self.config.providers.values():
            out.update((lim.id, lim) for lim in p.limits)
        for r in self.config.routes.values():
            out.update((lim.id, lim) for lim in r.limits)
        out.update((lim.id, lim) for lim in self.config.global_limits)
        return list(out.values())

    async def rebuild_counters(self, limits: Iterable[Limit] | None = None) -> None:
        """Recount every limit's current window from the ledger (the source of truth)."""
        now = self.clock.now()
        adopt = getattr(self.counters, "adopt", None)
        if adopt is not None:  # shared counters (issue 8) hold every replica's use already
            await adopt(list(limits) if limits is not None else self.all_limits(), self.ledger, now)
            return
        for lim in limits if limits is not None else self.all_limits():
            start = window_start(now, lim.window, self.config.tz)
            since = 0.0 if math.isinf(start) else start
            if lim.window.kind == "rolling":
                for at, m in await self.ledger.events_scope(lim.scope, since):
                    await self.counters.charge([lim], m, at, now)
            else:
                m = await self.ledger.sum_scope(lim.scope, since)
                await self.counters.charge([lim], m, now, now)

    # -- identifiers ---------------------------------------------------------------------
    def new_request_id(self) -> str:
        return f"qf-{self._id_prefix}-{next(self._ids):x}"

    # -- requests ------------------------------------------------------------------------
    def parse(self, body: Any) -> ChatRequest:
        return parse_chat_request(
            body,
            max_tokens_cap=self.settings.max_tokens_cap,
            known_providers=frozenset(self.config.providers),
        )

    def resolve_route(self, model: str) -> Route:
        route = self.config.route(model)
        if route is None:
            raise NotFound(
                f"The model '{model}' is not served here: use a route name, a model a configured "
                "provider serves, or 'auto' (see GET /v1/models)",
                param="model",
            )
        return route

    def _facts(self, req: ChatRequest, ctx: CallContext) -> RequestFacts:
        return RequestFacts(
            prompt_tokens=estimate_prompt_tokens(req.body),
            max_tokens=req.max_tokens,
            complexity=req.complexity,
            preferred_provider=req.preferred_provider,
            forced_provider=ctx.forced_provider or self.forced_provider,
            agent=ctx.agent,
            min_completion_tokens=self.settings.min_completion_tokens,
            choices=req.choices,
        )

    def _route_limits(self, route: Route) -> list[Limit]:
        """Every key and provider limit a route can touch (cached until the keys change)."""
        cached = self._route_limit_cache.get(route.name)
        if cached is not None:
            return cached
        limits: dict[str, Limit] = {}
        for d in route.deployments:
            p = self.config.providers.get(d.provider)
            if p is None:
                continue
            limits.update((lim.id, lim) for lim in p.limits)
            for k in self._by_provider.get(d.provider, ()):
                limits.update((lim.id, lim) for lim in k.limits)
        out = list(limits.values())
        self._route_limit_cache[route.name] = out
        return out

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
        """Ranked candidates for a request now, the rejected ones with reasons, and the usages.

        With ``planned=False`` the candidates are only screened (key usable) and ranked; their
        headroom is checked by :func:`plan_candidate` in rank order, which is what the hot path
        does so that a decision costs one plan, not one per key.
        """
        now = self.clock.now()
        deps = route.deployments if deployments is None else deployments
        extra = (*route.limits, *self.config.global_limits, *ctx.limits)
        limits = self._route_limits(route)
        if extra:
            limits = [*limits, *extra]
        usages = await self.counters.snapshot(limits, now)
        build = build_candidates if planned else screen_candidates
        cands, rejected = build(
            deps, self._by_provider, self.config.providers, extra, usages, self.health, facts, now,
            saturation=self.settings.rate_saturation, exclude=exclude, stats_of=self.model_stats,
        )  # fmt: skip
        strategy = route.strategy or self.settings.strategy
        return rank(strategy, cands, facts, self.rng, self.config.strategy), rejected, usages

    async def _pick(
        self,
        route: Route,
        facts: RequestFacts,
        ctx: CallContext,
        tried: set[tuple[str, str]],
        deployments: Sequence[Deployment],
        deadline: float,
        failed: bool,
    ) -> _Pick:
        while True:
            ranked, rejected, usages = await self.candidates(
                route, facts, ctx, tried, deployments, planned=False
            )
            now = self.clock.now()
            raced = False
            for s in ranked:
                plan = plan_candidate(s.candidate, usages, facts, now)
                if isinstance(plan, Rejection):
                    rejected.append(plan)
                    continue
                out = await self.counters.reserve(plan.claims, now)
                if out.ok:
                    assert out.reservation_id is not None
                    return _Pick(s, out.reservation_id)
                raced = True
            if raced:
                continue  # a reservation lost a race: look again with fresh usage
            if failed:
                raise _NoMore(rejected)
            frees = [r.available_at for r in rejected if r.available_at is not None]
            first = min(frees) if frees else None
            wait = (first - now) if first is not None else None
            mono_left = deadline - self.clock.monotonic()
            if wait is not None and wait <= self.settings.max_wait_s and wait < mono_left:
                await self._sleep(max(wait, 0.0) + 0.001)
                continue
            raise exhausted_error(rejected, first, now)

    async def chat(self, body: Any, ctx: CallContext | None = None) -> ChatOutcome:
        """A non-streaming chat completion routed across keys with fallback."""
        ctx = ctx or CallContext()
        req = self.parse(body)
        if req.stream:
            raise BadRequest("use open_stream() for stream=true", param="stream")
        route = self.resolve_route(req.model)

        async def run(
            route: Route, rid: str, n: int, pick: _Pick, deadline: float, can_fall_back: bool
        ) -> ChatOutcome | UpstreamFailure:
            return await self._attempt(
                req, route, ctx, rid, n, pick, deadline, can_fall_back=can_fall_back
            )

        self.in_flight += 1
        try:
            outcome, attempts, pick = await self._route_attempts(req, ctx, route, run)
            outcome.attempts = attempts
            outcome.why = pick.scored.breakdown
            self.session_totals.book(True, outcome.usage.total_tokens)
            return outcome
        except QuotaflowError:
            self.session_totals.book(False)
            raise
        finally:
            self.in_flight -= 1

    async def _route_attempts(
        self, req: ChatRequest, ctx: CallContext, route: Route, run: _AttemptFn[_T]
    ) -> tuple[_T, list[Attempt], _Pick]:
        """The attempt loop shared by plain and streamed requests: pick → ``run`` → on a
        failure, the next candidate (or the fallback route), up to ``max_attempts``."""
        facts = self._facts(req, ctx)
        rid = self.new_request_id()
        deadline = self.clock.monotonic() + self.settings.request_timeout_s
        tried: set[tuple[str, str]] = set()
        attempts: list[Attempt] = []
        deployments = list(route.deployments)
        routes_used = {route.name}
        while len(attempts) < self.settings.max_attempts:
            try:
                pick = await self._pick(
                    route, facts, ctx, tried, deployments, deadline, bool(attempts)
                )
            except _NoMore:
                break
            c = pick.candidate
            tried.add((c.key.id, c.model))
            n = len(attempts) + 1
            result = await run(
                route, rid, n, pick, deadline, self._can_fall_back(route, routes_used)
            )
            if not isinstance(result, UpstreamFailure):
                attempts.append(Attempt(c.provider, c.key.id, c.model, "ok"))
                return result, attempts, pick
            attempts.append(
                Attempt(
                    c.provider,
                    c.key.id,
                    c.model,
                    "error",
                    result.kind.value,
                    result.status,
                    result.message,
                )
            )
            if not result.kind.retryable:
                fallback = self._fallback_route(result, route, routes_used)
                if fallback is None:
                    raise client_error(result, attempts)
                route, deployments = fallback, list(fallback.deployments)
                routes_used.add(route.name)
                continue
            deployments = self._after_failure(result, c, deployments, tried)
            if not deployments and result.kind is ErrorKind.CONTEXT_TOO_LONG:
                raise client_error(result, attempts)  # no larger window: the client's to fix
        raise all_failed(attempts)

    def _after_failure(
        self,
        f: UpstreamFailure,
        c: Candidate,
        deployments: list[Deployment],
        tried: set[tuple[str, str]],
    ) -> list[Deployment]:
        """Which deployments stay worth trying after a failure."""
        if f.kind is ErrorKind.NOT_FOUND:
            return [
                d for d in deployments if not (d.provider == c.provider and d.model.name == c.model)
            ]
        if f.kind is ErrorKind.CONTEXT_TOO_LONG:
            window = c.deployment.model.context_window
            return [d for d in deployments if d.model.context_window > window]
        if f.kind is ErrorKind.UNSUPPORTED:
            # The translation is per protocol: every deployment speaking it would refuse too.
            protocol = self.config.providers[c.provider].protocol
            return [d for d in deployments if self._protocol_of(d) != protocol]
        return deployments

    def _protocol_of(self, d: Deployment) -> str | None:
        p = self.config.providers.get(d.provider)
        return p.protocol if p is not None else None

    def _fallback_route(self, f: UpstreamFailure, route: Route, used: set[str]) -> Route | None:
        """The route a filtered request moves to (``routes[].fallback_route``), if any.

        Only a content-filter refusal moves a request to another route; each route is tried
        once, so fallback chains end and never loop.
        """
        if f.kind is not ErrorKind.CONTENT_FILTERED or not self._can_fall_back(route, used):
            return None
        return self.config.routes.get(route.fallback_route or "")

    def _can_fall_back(self, route: Route, used: set[str]) -> bool:
        fb = route.fallback_route
        return fb is not None and fb not in used and fb in self.config.routes

    async def _attempt(
        self,
        req: ChatRequest,
        route: Route,
        ctx: CallContext,
        rid: str,
        n: int,
        pick: _Pick,
        deadline: float,
        *,
        can_fall_back: bool = False,
    ) -> ChatOutcome | UpstreamFailure:
        c = pick.candidate
        provider = self.config.providers[c.provider]
        adapter = adapter_for(provider.protocol)
        row = self._row(rid, n, route, ctx, pick, stream=False)
        await self._journal(row, pick)
        hl.begin_attempt(c.health)
        timeout = max(
            min(
                provider.timeout_s or self.settings.request_timeout_s,
                deadline - self.clock.monotonic(),
            ),
            0.001,
        )
        t0 = self.clock.monotonic()
        failure: UpstreamFailure
        try:
            call = adapter.build_request(
                req.body, self._target(c), max_tokens=pick.plan.max_tokens, stream=False
            )
            raw = await send(self.http, call, timeout)
        except UnsupportedByProtocol as exc:
            failure = UpstreamFailure(ErrorKind.UNSUPPORTED, None, exc.message)
            failure.body = exc.to_openai()
            await self._finish_failed(row, pick, failure, t0)
            return failure
        except QuotaflowError:
            await self._finish_failed(
                row, pick, UpstreamFailure(ErrorKind.BAD_REQUEST, 400, "translation failed"), t0
            )
            raise
        except TRANSPORT_ERRORS as exc:
            failure = transport_failure(exc, timeout)
            await self._finish_failed(row, pick, failure, t0)
            return failure
        latency_ms = (self.clock.monotonic() - t0) * 1000.0
        info = adapter.rate_info(raw.headers)
        if info is not None:
            hl.record_rate_info(c.health, info, self.clock.now())
        if raw.status >= 300:
            failure = adapter.classify_error(raw.status, raw.headers, raw.body)
            await self._finish_failed(row, pick, failure, t0, counted=True)
            return failure
        try:
            result = adapter.parse_response(
                raw.status, raw.headers, raw.body, c.model, created=int(self.clock.now())
            )
        except MalformedResponse as exc:
            failure = UpstreamFailure(ErrorKind.MALFORMED, raw.status, str(exc))
            await self._finish_failed(row, pick, failure, t0, counted=True)
            return failure
        if can_fall_back and _refused_by_filter(result.body):
            # A provider's filter refused the prompt outright (Gemini's blockReason, Anthropic's
            # refusal, an empty content_filter answer): billed as answered, then moved on to the
            # fallback route like a content_filter error.
            detail = "the provider's content filter refused the request"
            await self._finish_ok(
                row, pick, result.usage, latency_ms, None, status="error", detail=detail,
                error_kind=ErrorKind.CONTENT_FILTERED.value,
            )  # fmt: skip
            return UpstreamFailure(ErrorKind.CONTENT_FILTERED, raw.status, detail)
        cost = await self._finish_ok(row, pick, result.usage, latency_ms, None)
        hl.record_success(c.health, latency_ms, self.clock.now())
        self._observe(c, Outcome(True, latency_ms, tokens=result.usage.total_tokens))
        body = result.body
        if not body.get("created"):
            body["created"] = int(self.clock.now())
        return ChatOutcome(
            body, result.usage, cost, c.provider, c.key, c.model, route.name, rid, []
        )

    async def _journal(self, row: LedgerRow, pick: _Pick) -> None:
        """Journal the pending row; if the ledger cannot (it is down), free the reservation."""
        try:
            await self.ledger.begin(row)
        except BaseException:
            await self.counters.release(pick.reservation_id)
            raise

    def _target(self, c: Candidate) -> CallTarget:
        p = self.config.providers[c.provider]
        return CallTarget(p.base_url, c.model, c.key.secret, p.headers)

    def _row(
        self, rid: str, n: int, route: Route, ctx: CallContext, pick: _Pick, *, stream: bool
    ) -> LedgerRow:
        c, plan = pick.candidate, pick.plan
        return LedgerRow(
            request_id=rid, attempt=n, ts=self.clock.now(), agent=ctx.agent, route=route.name,
            provider=c.provider, key_id=c.key.id, model=c.model, status="pending", stream=stream,
            reserved_tokens=plan.reserved_tokens,
            extra={"reserved_cost": c.deployment.model.price.worst_case_usd(plan.prompt_tokens, plan.completion_tokens)},
        )  # fmt: skip

    async def _finish_ok(
        self, row: LedgerRow, pick: _Pick, usage: Usage, latency_ms: float, ttfb_ms: float | None,
        status: str = "ok", detail: str | None = None, error_kind: str | None = None,
    ) -> float:  # fmt: skip
        c = pick.candidate
        cost = c.deployment.model.price.cost_usd(usage)
        now = self.clock.now()
        await self.counters.settle(
            pick.reservation_id, Measure(float(usage.total_tokens), 1.0, cost), now
        )
        self.changes += 1
        row.prompt_tokens = usage.prompt_tokens
        row.completion_tokens = usage.completion_tokens
        row.cached_tokens = usage.cached_tokens
        row.total_tokens = usage.total_tokens
        row.requests = 1
        row.cost_usd = cost
        row.latency_ms = latency_ms
        row.ttfb_ms = ttfb_ms
        row.status = status
        row.estimated = usage.estimated
        row.detail = detail
        row.error_kind = error_kind
        await self.ledger.finish(row)
        return cost

    async def _finish_failed(
        self, row: LedgerRow, pick: _Pick, f: UpstreamFailure, t0: float, *, counted: bool = False
    ) -> None:
        c = pick.candidate
        now = self.clock.now()
        await self.counters.settle(
            pick.reservation_id, Measure(0.0, 1.0 if counted else 0.0, 0.0), now
        )
        self.changes += 1
        depleted_until = (
            self._depleted_until(c.key, now, f) if f.kind is ErrorKind.QUOTA_EXHAUSTED else None
        )
        hl.record_failure(
            c.health, f.kind, f.message, now, retry_after_s=f.retry_after_s, depleted_until=depleted_until,
            cooldown_s=self.settings.cooldown_s, failure_threshold=self.settings.failure_threshold,
        )  # fmt: skip
        if self.health_sync is not None:
            self.health_sync.notify(c.key.id)
        self._observe(
            c, Outcome(False, error_kind=f.kind.value, error=f"{f.kind.value}: {f.message}")
        )
        row.requests = 1 if counted else 0
        row.latency_ms = (self.clock.monotonic() - t0) * 1000.0
        row.status = "error"
        row.error_kind = f.kind.value
        row.http_status = f.status
        row.detail = f.message[:500]
        await self.ledger.finish(row)

    def _depleted_until(self, key: Key, now: float, f: UpstreamFailure | None = None) -> float:
        """The provider says the key is empty: until the window the provider named resets
        (Gemini's per-day quota: midnight Pacific), else until the key's longest calendar
        window resets."""
        if f is not None and f.quota_window is not None:
            tz = ZoneInfo(f.quota_tz) if f.quota_tz else self.config.tz
            at = next_reset(now, parse_window(f.quota_window), tz)
            if at is not None:
                return at
        resets = [
            next_reset(now, lim.window, self.config.tz)
            for lim in key.limits
            if lim.window.kind not in ("rolling",)
        ]
        known = [r for r in resets if r is not None]
        if known:
            return max(known)
        if any(lim.window.kind == "once" for lim in key.limits):
            return math.inf  # a one-time credit: until an operator resets or tops it up
        return now + 3600.0

    # -- streaming -----------------------------------------------------------------------
    async def open_stream(self, body: Any, ctx: CallContext | None = None) -> ActiveStream:
        """Route a ``stream: true`` request; returns once the first chunk is in hand.

        Fallback is possible until then; afterwards the stream belongs to one attempt.
        """
        ctx = ctx or CallContext()
        req = self.parse(body)
        if not req.stream:
            raise BadRequest("open_stream() needs stream=true", param="stream")
        route = self.resolve_route(req.model)

        async def run(
            route: Route, rid: str, n: int, pick: _Pick, deadline: float, can_fall_back: bool
        ) -> ActiveStream | UpstreamFailure:
            return await self._stream_attempt(req, route, ctx, rid, n, pick, deadline)

        try:
            stream, attempts, _ = await self._route_attempts(req, ctx, route, run)
        except QuotaflowError:
            self.session_totals.book(False)
            raise
        stream.attempts = attempts
        return stream

    async def _stream_attempt(
        self,
        req: ChatRequest,
        route: Route,
        ctx: CallContext,
        rid: str,
        n: int,
        pick: _Pick,
        deadline: float,
    ) -> ActiveStream | UpstreamFailure:
        c = pick.candidate
        provider = self.config.providers[c.provider]
        adapter = adapter_for(provider.protocol)
        row = self._row(rid, n, route, ctx, pick, stream=True)
        await self._journal(row, pick)
        hl.begin_attempt(c.health)
        timeout = max(
            min(
                provider.timeout_s or self.settings.request_timeout_s,
                deadline - self.clock.monotonic(),
            ),
            0.001,
        )
        t0 = self.clock.monotonic()
        try:
            call = adapter.build_request(
                req.body, self._target(c), max_tokens=pick.plan.max_tokens, stream=True
            )
            resp = await open_stream(self.http, call, timeout)
        except UnsupportedByProtocol as exc:
            failure = UpstreamFailure(ErrorKind.UNSUPPORTED, None, exc.message)
            failure.body = exc.to_openai()
            await self._finish_failed(row, pick, failure, t0)
            return failure
        except QuotaflowError:
            await self._finish_failed(
                row, pick, UpstreamFailure(ErrorKind.BAD_REQUEST, 400, "translation failed"), t0
            )
            raise
        except TRANSPORT_ERRORS as exc:
            failure = transport_failure(exc, timeout)
            await self._finish_failed(row, pick, failure, t0)
            return failure
        headers = resp.headers
        info = adapter.rate_info(headers)
        if info is not None:
            hl.record_rate_info(c.health, info, self.clock.now())
        if resp.status >= 300:
            try:
                raw = await resp.read(timeout)
            except TRANSPORT_ERRORS:
                raw = b""
            finally:
                resp.release()
            failure = adapter.classify_error(resp.status, headers, raw)
            await self._finish_failed(row, pick, failure, t0, counted=True)
            return failure
        stream = ActiveStream(
            gateway=self, resp=resp, read_timeout_s=timeout, translator=adapter.stream_translator(
                c.model, req.include_usage, created=int(self.clock.now())
            ),
            row=row, pick=pick, t0=t0, prompt_estimate=pick.plan.prompt_tokens,
            headers=routing_headers(rid, c.provider, c.key, c.model, route.name, n),
        )  # fmt: skip
        failure_first = await stream.prime()
        if failure_first is not None:
            await self._finish_failed(row, pick, failure_first, t0, counted=True)
            return failure_first
        return stream

    async def finish_stream(
        self, row: LedgerRow, pick: _Pick, usage: Usage, latency_ms: float, ttfb_ms: float | None,
        *, status: str, failure: UpstreamFailure | None, detail: str | None,
    ) -> float:  # fmt: skip
        """Bill a stream that ended (completed, cut upstream or abandoned by the client)."""
        c = pick.candidate
        now = self.clock.now()
        if failure is not None:
            hl.record_failure(
                c.health, failure.kind, failure.message, now, retry_after_s=failure.retry_after_s,
                cooldown_s=self.settings.cooldown_s, failure_threshold=self.settings.failure_threshold,
            )  # fmt: skip
            if self.health_sync is not None:
                self.health_sync.notify(c.key.id)
            self._observe(
                c,
                Outcome(
                    False,
                    error_kind=failure.kind.value,
                    error=f"{failure.kind.value}: {failure.message}",
                ),
            )
        elif status == "ok":
            hl.record_success(c.health, latency_ms, now, ttfb_ms)
            self._observe(c, Outcome(True, latency_ms, ttfb_ms, usage.total_tokens))
        else:
            c.health.probe_in_flight = False
        self.session_totals.book(status == "ok" and failure is None, usage.total_tokens)
        return await self._finish_ok(
            row, pick, usage, latency_ms, ttfb_ms, status=status, detail=detail,
            error_kind=failure.kind.value if failure else None,
        )  # fmt: skip

    # -- operator actions ----------------------------------------------------------------
    def enable_key(self, key_id: str) -> None:
        hl.enable(self.health.setdefault(key_id, hl.Health()))
        if self.health_sync is not None:  # clears it on every replica (issue 8)
            self.health_sync.notify_reset(key_id, "enable")
        self.changes += 1

    def disable_key(self, key_id: str, reason: str = "disabled by an operator") -> None:
        """Stop routing to a key until :meth:`enable_key` (in memory: a restart forgets it)."""
        self.health.setdefault(key_id, hl.Health()).disabled_reason = reason
        if self.health_sync is not None:  # disables it on every replica (issue 8)
            self.health_sync.notify(key_id)
        self.changes += 1

    def add_provider(self, provider: Provider, routes: dict[str, Route]) -> None:
        """Serve a provider created at runtime; ``routes`` replace only implicit routes."""
        self.config.providers[provider.name] = provider
        for name, route in routes.items():
            old = self.config.routes.get(name)
            if old is None or old.implicit:
                self.config.routes[name] = route
        self._reindex()
        self.changes += 1

    def add_key(self, key: Key) -> None:
        """Start routing to ``key`` (or replace the key of the same id)."""
        self.keys[key.id] = key
        self.health.setdefault(key.id, hl.Health())
        self._reindex()
        self.changes += 1

    def remove_key(self, key_id: str) -> Key | None:
        """Stop routing to a key; in-flight requests on it finish normally."""
        key = self.keys.pop(key_id, None)
        self._reindex()
        self.changes += 1
        return key

    def provider_keys(self, provider: str) -> list[Key]:
        return list(self._by_provider.get(provider, ()))

    async def reset_limits(self, limits: Iterable[Limit]) -> None:
        """Seed 000's reset: usage of these limits' scopes before now no longer counts."""
        limits = list(limits)
        now = self.clock.now()
        for scope in sorted({lim.scope for lim in limits}):
            await self.ledger.record_reset(scope, now)
        await self.counters.reset(limits, now)
        self.changes += 1

    async def reset_provider(self, provider: str) -> list[Key]:
        """Reset every limit of a provider and its keys, and clear their depleted state."""
        keys = self.provider_keys(provider)
        p = self.config.providers.get(provider)
        limits = [lim for k in keys for lim in k.limits] + list(p.limits if p else ())
        await self.reset_limits(limits)
        for k in keys:
            self.health.setdefault(k.id, hl.Health()).depleted_until = None
            if self.health_sync is not None:
                self.health_sync.notify_reset(k.id, "replenish")
        return keys

    # -- operations (issue 5: key tester, quality feedback, per key × model stats) -------
    def key_model_stats(self) -> dict[tuple[str, str], ModelStats]:
        """Seed 004's per key × model statistics, by ``(key_id, model)``."""
        return self.model_stats

    def stats_for(self, key_id: str, model: str) -> ModelStats:
        """The statistics record of one key × model (created empty)."""
        stats = self.key_model_stats()
        rec = stats.get((key_id, model))
        if rec is None:
            key = self.keys.get(key_id)
            rec = stats[(key_id, model)] = ModelStats(key.provider if key else "", key_id, model)
        return rec

    async def record_probe(
        self, key_id: str, model: str, ok: bool, latency_ms: float | None,
        error: UpstreamFailure | None = None, usage: Usage | None = None,
    ) -> LedgerRow:  # fmt: skip
        """Book a key-tester call: the key's health (an auth failure disables it, an empty
        quota depletes it), its key × model stats, and a ``source='probe'`` ledger row whose
        tokens count against the key's limits like any other use."""
        key = self.keys[key_id]
        now = self.clock.now()
        usage = usage or Usage()
        price = self.config.providers[key.provider].model(model).price
        cost = price.cost_usd(usage) if ok else 0.0
        counted = ok or (error is not None and error.status is not None)
        h = self.health.setdefault(key_id, hl.Health())
        if ok:
            hl.record_success(h, latency_ms or 0.0, now)
        elif error is not None:
            until = (
                self._depleted_until(key, now, error)
                if error.kind is ErrorKind.QUOTA_EXHAUSTED
                else None
            )
            hl.record_failure(
                h, error.kind, error.message, now, retry_after_s=error.retry_after_s,
                depleted_until=until, cooldown_s=self.settings.cooldown_s,
                failure_threshold=self.settings.failure_threshold,
            )  # fmt: skip
            if self.health_sync is not None:
                self.health_sync.notify(key_id)
        self._observe_at(key_id, model, now, Outcome(
            ok, latency_ms, tokens=usage.total_tokens,
            error_kind=None if error is None else error.kind.value,
            error=None if error is None else f"{error.kind.value}: {error.message}",
        ))  # fmt: skip
        row = LedgerRow(
            request_id=self.new_request_id(), attempt=1, ts=now, agent="quotaflow-probe",
            provider=key.provider, key_id=key_id, model=model, prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens,
            requests=1 if counted else 0, cost_usd=cost, latency_ms=latency_ms,
            status="ok" if ok else "error", error_kind=None if error is None else error.kind.value,
            http_status=None if error is None else error.status, estimated=usage.estimated,
            source="probe", detail=None if error is None else error.message[:500],
        )  # fmt: skip
        await self.ledger.append([row])
        p = self.config.providers[key.provider]
        limits = [*key.limits, *p.limits, *self.config.global_limits]
        measure = Measure(float(usage.total_tokens), 1.0 if counted else 0.0, cost)
        await self.counters.charge(limits, measure, now, now)
        return row

    def record_quality(
        self, provider: str, model: str, success: bool, score: float
    ) -> list[ModelStats]:
        """Seed 004's ``updateQualityScore``: book a task's quality on the key × model records
        of ``provider``/``model`` last used (every key of the provider when none was)."""
        stats = [
            s
            for s in self.key_model_stats().values()
            if s.provider == provider and s.model == model
        ]
        used = [s for s in stats if s.last_used is not None]
        if used:
            latest = max(s.last_used or 0.0 for s in used)
            targets = [s for s in used if s.last_used == latest]
        else:
            targets = [self.stats_for(k.id, model) for k in self.provider_keys(provider)]
        if not targets:
            raise NotFound(f"no key of provider {provider!r} is configured", param="provider")
        for s in targets:
            self._observe_quality(s, success, score)
        return targets

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
                self._observe_at(r.key_id, r.model, r.ts, Outcome(
                    r.status == "ok", r.latency_ms, tokens=r.total_tokens,
                    error_kind=r.error_kind, error=r.detail,
                ))  # fmt: skip
            h = self.health.setdefault(r.key_id, hl.Health())
            if r.error_kind == ErrorKind.AUTH.value:
                h.disabled_reason = f"auth (key tester): {(r.detail or '')[:200]}"
            elif r.error_kind == ErrorKind.QUOTA_EXHAUSTED.value:
                h.depleted_until = self._depleted_until(self.keys[r.key_id], now)
        return len(rows)

    # -- learning (issue 7): key × model statistics, feedback, session summary -------------
    def _observe(self, c: Candidate, outcome: Outcome) -> None:
        self._observe_at(c.key.id, c.model, self.clock.now(), outcome)

    def _observe_at(self, key_id: str, model: str, at: float, outcome: Outcome) -> None:
        """Book one outcome into the key × model's statistics; save them now and then."""
        st.observe(
            self.stats_for(key_id, model), outcome, at,
            self.settings.learning_half_life_s, self.settings.learning_window,
        )  # fmt: skip
        self._stats_dirty.add((key_id, model))
        self._maybe_save_stats()

    def _observe_quality(self, s: ModelStats, success: bool, score: float) -> None:
        try:
            st.observe_quality(s, score, success=success)
        except ValueError as exc:
            raise BadRequest(str(exc), param="score") from None
        self._stats_dirty.add((s.key_id, s.model))
        self._maybe_save_stats()

    async def record_feedback(
        self, score: float, *, success: bool = True, request_id: str | None = None,
        provider: str | None = None, model: str | None = None,
    ) -> list[ModelStats]:  # fmt: skip
        """Quality feedback on a task: by ``request_id`` it lands on the key × model that
        answered that request; by ``provider`` + ``model`` as :meth:`record_quality` says.
        Future choices of ``learned`` and ``bandit`` move with it. Returns the records changed."""
        if request_id is None:
            if provider is None or model is None:
                raise BadRequest("name a request_id, or a provider and a model", param="request_id")
            return self.record_quality(provider, model, success, score)
        rows = [r for r in await self.ledger.request_rows(request_id) if r.key_id and r.model]
        if not rows:
            raise NotFound(f"no request with id {request_id!r} in the ledger", param="request_id")
        answered = [r for r in rows if r.status == "ok"]
        row = (answered or rows)[-1]
        s = self.stats_for(row.key_id, row.model)
        if not s.provider:
            s.provider = row.provider
        self._observe_quality(s, success, score)
        return [s]

    def session_summary(self) -> dict[str, Any]:
        """Seed 004's ``getSessionSummary()`` since the engine was made: ``requests``,
        ``successes``, ``failures``, ``totalTokens``, ``successRate``."""
        return self.session_totals.summary()

    async def restore_model_stats(self) -> int:
        """Load the saved key × model statistics (when the ledger is a :class:`StatsStore`)."""
        if not isinstance(self.ledger, StatsStore):
            return 0
        loaded = await self.ledger.load_model_stats()
        for rec in loaded:
            self.model_stats[(rec.key_id, rec.model)] = rec
        self._stats_saved_at = self.clock.monotonic()
        return len(loaded)

    async def save_model_stats(self) -> int:
        """Save the key × model records changed since the last save; returns how many."""
        task = self._stats_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            await asyncio.shield(task)
        if not isinstance(self.ledger, StatsStore) or not self._stats_dirty:
            return 0
        keys, self._stats_dirty = self._stats_dirty, set()
        records = [self.model_stats[k] for k in sorted(keys) if k in self.model_stats]
        self._stats_saved_at = self.clock.monotonic()
        try:
            await self.ledger.save_model_stats(records, self.clock.now())
        except Exception:
            self._stats_dirty |= keys  # try again next time
            raise
        return len(records)

    def _maybe_save_stats(self) -> None:
        """Start a background save when the last one is ``stats_flush_s`` old."""
        mono = self.clock.monotonic()
        if self._stats_saved_at is None:
            self._stats_saved_at = mono
        due = mono - self._stats_saved_at >= self.settings.stats_flush_s
        if not due or (self._stats_task is not None and not self._stats_task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a plain call): the next save or close() writes them
        self._stats_saved_at = mono
        self._stats_task = loop.create_task(self._save_stats_quietly())

    async def _save_stats_quietly(self) -> None:
        try:
            await self.save_model_stats()
        except Exception:  # a failed snapshot is retried later; it must never break routing
            log.warning("saving the key × model statistics failed", exc_info=True)


class _NoMore(Exception):
    def __init__(self, rejected: list[Rejection]) -> None:
        super().__init__("no candidate left")
        self.rejected = rejected


def exhausted_error(
    rejected: list[Rejection], first_free: float | None, now: float
) -> QuotaExhausted:
    full = sorted({r.limit_id for r in rejected if r.limit_id})
    other = sorted({f"{r.provider}/{r.key_id}: {r.reason}" for r in rejected if not r.limit_id})
    if not rejected:
        msg = "No key is configured for this model."
    else:
        parts = []
        if full:
            parts.append("full limits: " + ", ".join(full))
        if other:
            parts.append("unavailable keys: " + "; ".join(other))
        msg = "Every key for this request is out of headroom (" + "; ".join(parts) + ")."
    headers: dict[str, str] = {}
    details: dict[str, Any] = {
        "full_limits": full,
        "rejected": [
            {"provider": r.provider, "key": r.key_id, "model": r.model, "reason": r.reason,
             "available_at": r.available_at}
            for r in rejected
        ],
    }  # fmt: skip
    if first_free is not None and math.isfinite(first_free):
        secs = max(first_free - now, 0.0)
        msg += f" The first frees in {secs:.1f}s."
        headers["retry-after"] = str(max(math.ceil(secs), 1))
        details["first_frees_at"] = first_free
        details["first_frees_in_s"] = round(secs, 3)
    else:
        msg += " None frees by itself: a quota was used up for good; reset or add a key."
    return QuotaExhausted(msg, headers=headers, details=details)


def client_error(f: UpstreamFailure, attempts: list[Attempt]) -> QuotaflowError:
    err = BadRequest(f.message, code=f.provider_code)
    err.status = f.status or 400
    if f.body is not None:
        err.upstream_body = f.body  # type: ignore[attr-defined]
    err.details = {"attempts": [attempt_dict(a) for a in attempts]}
    return err


def attempt_dict(a: Attempt) -> dict[str, Any]:
    d: dict[str, Any] = {
        "provider": a.provider,
        "key": a.key_id,
        "model": a.model,
        "outcome": a.outcome,
    }
    if a.error_kind:
        d["error_kind"] = a.error_kind
    if a.http_status is not None:
        d["http_status"] = a.http_status
    if a.message:
        d["message"] = a.message
    return d


def all_failed(attempts: list[Attempt]) -> QuotaflowError:
    if not attempts:
        return UpstreamError("no attempt could be made")
    kinds = {a.error_kind for a in attempts}
    if kinds == {ErrorKind.UNSUPPORTED.value}:
        # No deployment's protocol can express the request: the client's to change.
        err = UnsupportedByProtocol(attempts[0].message or "unsupported request")
        err.details = {"attempts": [attempt_dict(a) for a in attempts]}
        return err
    summary = "; ".join(
        f"{a.provider}/{a.key_id} ({a.model}): {a.error_kind} {a.http_status or ''}".strip()
        for a in attempts
    )
    details = {"attempts": [attempt_dict(a) for a in attempts]}
    if kinds <= {"rate_limited", "quota_exhausted"}:
        return QuotaExhausted(
            f"Every provider tried refused for rate or quota: {summary}", details=details
        )
    return UpstreamError(f"All {len(attempts)} attempts failed: {summary}", details=details)


def _refused_by_filter(body: dict[str, Any]) -> bool:
    """True when every choice of an answer is an empty ``content_filter`` stop: the
    provider's filter refused the prompt and the client got nothing."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for ch in choices:
        msg = ch.get("message") if isinstance(ch, dict) else None
        if not isinstance(msg, dict) or ch.get("finish_reason") != "content_filter":
            return False
        if msg.get("content") or msg.get("tool_calls"):
            return False
    return True
