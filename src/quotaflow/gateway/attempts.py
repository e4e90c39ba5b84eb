"""The attempt loop, and the one attempt every call to a provider goes through.

:func:`exchange` is one call to one key: translate, send (or open the stream), read the
provider's rate headers, classify an error (its text masked first), parse the answer (or wait
for a stream's first frame). Routed requests, plain and streamed, and the key tester all
use it. :class:`Attempts` runs the loop around it for routed requests: pick → journal →
exchange → book; on a failure the next candidate (or the fallback route), up to
``max_attempts``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import (
    Adapter,
    CallTarget,
    ChatResult,
    MalformedResponse,
    UpstreamFailure,
)
from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.engine import health as hl
from quotaflow.engine.candidates import Candidate, Rejection, RequestFacts
from quotaflow.engine.catalog import Deployment, Key, Provider, Route
from quotaflow.errors import BadRequest, QuotaExhausted, QuotaflowError, UnsupportedByProtocol
from quotaflow.gateway.booking import Booking, SecretMask
from quotaflow.gateway.outcomes import (
    Attempt,
    CallContext,
    ChatOutcome,
    StreamEnd,
    all_failed,
    client_error,
    routing_headers,
)
from quotaflow.gateway.picking import NoMore, Pick, Picker
from quotaflow.gateway.request import ChatRequest
from quotaflow.gateway.streaming import ActiveStream, Bounds
from quotaflow.gateway.upstream import TRANSPORT_ERRORS, open_stream, send, transport_failure
from quotaflow.httpclient import Transport
from quotaflow.observability.observer import Observer
from quotaflow.types import ErrorKind


@dataclass(slots=True)
class Exchange:
    """What one call to one key produced: an answer, an open stream, or a failure."""

    failure: UpstreamFailure | None = None
    counted: bool = False  # the provider saw the request (it counts against rate limits)
    answer: ChatResult | None = None
    stream: ActiveStream | None = None
    latency_ms: float = 0.0
    status: int | None = None
    error: QuotaflowError | None = None  # the request could not be translated: the client's


@dataclass(slots=True)
class Call:
    """One call to one key: the body, and what to send it with."""

    provider: Provider
    key: Key
    model: str
    body: dict[str, Any]
    max_tokens: int
    stream: bool = False
    include_usage: bool = False
    prompt_estimate: int = 0
    adapter: Adapter | None = None  # a door's; None: the protocol's own (OpenAI in and out)


async def exchange(
    http: Transport,
    clock: Clock,
    mask: SecretMask,
    call: Call,
    timeout_s: float,
    health: hl.Health,
    *,
    headers: dict[str, str] | None = None,
    request_id: str = "",
    on_end: Callable[[StreamEnd], Any] | None = None,
    first_byte_s: float | None = None,
    stream_max_s: float | None = None,
) -> Exchange:
    """Call the provider once; for a stream, return once its first frame is in hand.

    ``first_byte_s`` bounds the wait for the answer's head (and a stream's first event);
    ``timeout_s`` the whole answer (a stream's wait between reads); ``stream_max_s`` a
    stream's whole duration."""
    adapter = call.adapter or adapter_for(call.provider.protocol)
    target = CallTarget(call.provider.base_url, call.model, call.key.secret, call.provider.headers)
    t0 = clock.monotonic()
    resp_headers: Mapping[str, str]
    try:
        req = adapter.build_request(
            call.body, target, max_tokens=call.max_tokens, stream=call.stream
        )
        if call.stream:
            resp = await open_stream(http, req, timeout_s, first_byte_s)
            status, resp_headers = resp.status, resp.headers
        else:
            raw = await send(http, req, timeout_s, first_byte_s)
            status, resp_headers = raw.status, raw.headers
    except UnsupportedByProtocol as exc:
        failure = UpstreamFailure(ErrorKind.UNSUPPORTED, None, exc.message)
        failure.body = exc.to_openai()
        return Exchange(failure, latency_ms=_since(clock, t0))
    except QuotaflowError as exc:
        failure = UpstreamFailure(ErrorKind.BAD_REQUEST, 400, "translation failed")
        return Exchange(failure, latency_ms=_since(clock, t0), error=exc)
    except TRANSPORT_ERRORS as exc:
        return Exchange(transport_failure(exc, timeout_s), latency_ms=_since(clock, t0))
    latency_ms = _since(clock, t0)
    info = adapter.rate_info(resp_headers)
    if info is not None:
        hl.record_rate_info(health, info, clock.now())
    if status >= 300:
        if call.stream:
            try:
                body = await resp.read(timeout_s)
            except TRANSPORT_ERRORS:
                body = b""
            finally:
                resp.release()
        else:
            body = raw.body
        failure = adapter.classify_error(status, resp_headers, mask.body(body, own=call.key.secret))
        return Exchange(failure, counted=True, latency_ms=latency_ms)
    if not call.stream:
        try:
            answer = adapter.parse_response(
                status, resp_headers, raw.body, call.model, created=int(clock.now())
            )
        except MalformedResponse as exc:
            failure = UpstreamFailure(ErrorKind.MALFORMED, status, str(exc))
            return Exchange(failure, counted=True, latency_ms=latency_ms)
        return Exchange(answer=answer, counted=True, latency_ms=latency_ms, status=status)
    assert on_end is not None, "a stream is booked when it ends"
    stream = ActiveStream(
        finish=on_end,
        clock=clock,
        resp=resp,
        bounds=Bounds(timeout_s, first_byte_s, stream_max_s),
        translator=adapter.stream_translator(
            call.model, call.include_usage, created=int(clock.now())
        ),
        request_id=request_id,
        t0=t0,
        prompt_estimate=call.prompt_estimate,
        headers=headers or {},
    )
    failure_first = await stream.prime()
    if failure_first is not None:
        return Exchange(failure_first, counted=True, latency_ms=latency_ms)
    return Exchange(stream=stream, counted=True, latency_ms=latency_ms)


def _since(clock: Clock, t0: float) -> float:
    return (clock.monotonic() - t0) * 1000.0


Result = ChatOutcome | ActiveStream
# An attempt waits for its first byte at most this share of the time left: the rest is kept
# for the attempts after it.
LATER_ATTEMPTS_SHARE = 0.5


class Attempts:
    def __init__(
        self,
        config: Config,
        picker: Picker,
        booking: Booking,
        clock: Clock,
        http: Callable[[], Transport],
        new_request_id: Callable[[], str],
        observer: Observer,
    ) -> None:
        self._config = config
        self._observer = observer
        self._settings = config.settings
        self._picker = picker
        self._booking = booking
        self._clock = clock
        self._http = http
        self._new_request_id = new_request_id

    async def run(
        self, req: ChatRequest, ctx: CallContext, route: Route, facts: RequestFacts
    ) -> tuple[Result, list[Attempt], Pick]:
        """Pick → attempt → on a failure, the next candidate (or the fallback route), up to
        ``max_attempts``; the result is an answer, or for ``stream: true`` an open stream.

        The observer sees the request begin here and end here (a stream: when it ends);
        each attempt in between reaches it through the booking path."""
        rid = self._new_request_id()
        obs = self._observer
        seen = obs.begin(
            ctx.door,
            ctx.agent,
            route.name,
            stream=req.stream,
            traceparent=ctx.traceparent,
            request_id=rid,
        )
        try:
            out = await self._run(req, ctx, route, facts, rid)
        except QuotaflowError as exc:
            if isinstance(exc, QuotaExhausted):
                await self._booking.refused(
                    rid, seen.attempts + 1, route, ctx, req.model, exc.message, stream=req.stream
                )
            obs.finish(seen, exc.status, error_kind_of(exc), exc.message)
            exc.observed = True
            raise
        except BaseException:  # cancelled: the client went away before an answer
            obs.finish(seen, 499, "client_gone")
            raise
        if not isinstance(out[0], ActiveStream):
            obs.finish(seen, 200)
        return out

    async def _run(
        self, req: ChatRequest, ctx: CallContext, route: Route, facts: RequestFacts, rid: str
    ) -> tuple[Result, list[Attempt], Pick]:
        deadline = self._clock.monotonic() + self._settings.request_timeout_s
        tried: set[tuple[str, str]] = set()
        tried_health: list[hl.Health] = []
        untried: list[Rejection] = []
        attempts: list[Attempt] = []
        deployments = self._door_deployments(req, route)
        routes_used = {route.name}
        while len(attempts) < self._settings.max_attempts:
            try:
                pick = await self._picker.pick(
                    route, facts, ctx, tried, deployments, deadline, bool(attempts)
                )
            except NoMore as exc:
                untried = exc.rejected
                break
            c = pick.candidate
            tried.add((c.key.id, c.model))
            tried_health.append(c.health)
            n = len(attempts) + 1
            can_fall_back = self._can_fall_back(route, routes_used)
            # Only an attempt that another can follow keeps time for it: the last candidate
            # (one key, or every other one tried) may take the whole deadline.
            last = n >= self._settings.max_attempts or not (
                can_fall_back or self._picker.has_untried(deployments, tried)
            )
            result = await self.attempt(
                req, route, ctx, rid, n, pick, deadline, can_fall_back, last=last
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
                    result.retry_after_s,
                )
            )
            if not result.kind.retryable:
                fallback = self._fallback_route(result, route, routes_used)
                if fallback is None:
                    raise client_error(result, attempts)
                route, deployments = fallback, list(fallback.deployments)
                routes_used.add(route.name)
                continue
            deployments = self._after_failure(result, c, deployments)
            if not deployments and result.kind is ErrorKind.CONTEXT_TOO_LONG:
                raise client_error(result, attempts)  # no larger window: the client's to fix
        now = self._clock.now()
        raise all_failed(attempts, first_free(tried_health, untried, now), now)

    async def attempt(
        self,
        req: ChatRequest,
        route: Route,
        ctx: CallContext,
        rid: str,
        n: int,
        pick: Pick,
        deadline: float,
        can_fall_back: bool = False,
        *,
        last: bool = False,
    ) -> Result | UpstreamFailure:
        """One routed attempt on the picked key: journal, exchange, book."""
        c = pick.candidate
        provider = self._config.providers[c.provider]
        booking = self._booking
        row = booking.row(rid, n, route, ctx, pick, stream=req.stream)
        await booking.journal(row, pick)
        hl.begin_attempt(c.health)
        left = deadline - self._clock.monotonic()
        timeout = max(min(provider.timeout_s or self._settings.request_timeout_s, left), 0.001)
        first_byte_s = (
            None if last else self._first_byte_budget(provider, c.health, left, timeout, req.stream)
        )
        t0 = self._clock.monotonic()
        body, max_tokens = with_defaults(provider, req, pick.plan.max_tokens)
        call = Call(
            provider,
            c.key,
            c.model,
            body,
            max_tokens,
            req.stream,
            req.include_usage,
            pick.plan.prompt_tokens,
            None if req.door is None else req.door.adapter(provider.protocol),
        )

        async def on_end(end: StreamEnd) -> float:
            cost = await booking.stream_ended(row, pick, end)
            kind = end.failure.kind.value if end.failure is not None else None
            self._observer.end(rid, 200, kind or (None if end.status == "ok" else end.status))
            return cost

        ex = await exchange(
            self._http(),
            self._clock,
            booking.mask,
            call,
            timeout,
            c.health,
            # a plain answer carries its headers in ChatOutcome; only a stream needs them now
            headers=(
                routing_headers(rid, c.provider, c.key, c.model, route.name, n)
                if req.stream
                else None
            ),
            request_id=rid,
            on_end=on_end,
            first_byte_s=first_byte_s,
            stream_max_s=provider.stream_max_s or self._settings.stream_max_s,
        )
        if ex.failure is not None:
            await booking.failed(row, pick, ex.failure, t0, counted=ex.counted)
            if ex.error is not None:
                raise ex.error
            return ex.failure
        if ex.stream is not None:
            return ex.stream
        assert ex.answer is not None
        result = ex.answer
        if can_fall_back and req.door is None and refused_by_filter(result.body):
            # A provider's filter refused the prompt outright (Gemini's blockReason, Anthropic's
            # refusal, an empty content_filter answer): billed as answered, then moved on to the
            # fallback route like a content_filter error.
            detail = "the provider's content filter refused the request"
            await booking.answered(
                row,
                pick,
                result.usage,
                ex.latency_ms,
                status="error",
                detail=detail,
                error_kind=ErrorKind.CONTENT_FILTERED.value,
            )
            return UpstreamFailure(ErrorKind.CONTENT_FILTERED, ex.status, detail)
        cost = await booking.answered(row, pick, result.usage, ex.latency_ms)
        await booking.succeeded(pick, ex.latency_ms, result.usage.total_tokens)
        body = result.body
        if req.door is None and not body.get("created"):
            body["created"] = int(self._clock.now())
        return ChatOutcome(
            body, result.usage, cost, c.provider, c.key, c.model, route.name, rid, []
        )

    def _first_byte_budget(
        self, provider: Provider, health: hl.Health, left: float, timeout: float, stream: bool
    ) -> float:
        """How long this attempt may wait for its first byte: the provider's (or the
        settings') ``ttfb_timeout_s``, never more than half the time left, so that a key
        that accepts and never answers leaves the rest of the deadline to the next one.

        A plain answer's first byte comes when the whole answer is ready, so a key whose
        answers usually take long gets twice its usual latency."""
        budget = provider.ttfb_timeout_s or self._settings.ttfb_timeout_s
        if not stream and health.latency_ewma_ms is not None:
            budget = max(budget, 2.0 * health.latency_ewma_ms / 1000.0)
        return max(min(budget, timeout, left * LATER_ATTEMPTS_SHARE), 0.001)

    # -- fallback rules ------------------------------------------------------------------
    def _door_deployments(self, req: ChatRequest, route: Route) -> list[Deployment]:
        """The route's deployments the request's door can reach (all of them for chat)."""
        door = req.door
        if door is None:
            return list(route.deployments)
        out = [
            d
            for d in route.deployments
            if d.model.kind == door.model_kind
            and door.adapter(self._protocol_of(d) or "") is not None
        ]
        if not out:
            raise BadRequest(
                f"the model {req.model!r} has no {door.model_kind} deployment this door can "
                "reach (an embedding model is marked kind: embedding)",
                param="model",
            )
        return out

    def _after_failure(
        self, f: UpstreamFailure, c: Candidate, deployments: list[Deployment]
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
            protocol = self._config.providers[c.provider].protocol
            return [d for d in deployments if self._protocol_of(d) != protocol]
        return deployments

    def _protocol_of(self, d: Deployment) -> str | None:
        p = self._config.providers.get(d.provider)
        return p.protocol if p is not None else None

    def _fallback_route(self, f: UpstreamFailure, route: Route, used: set[str]) -> Route | None:
        """The route a filtered request moves to (``routes[].fallback_route``), if any.

        Only a content-filter refusal moves a request to another route; each route is tried
        once, so fallback chains end and never loop.
        """
        if f.kind is not ErrorKind.CONTENT_FILTERED or not self._can_fall_back(route, used):
            return None
        return self._config.routes.get(route.fallback_route or "")

    def _can_fall_back(self, route: Route, used: set[str]) -> bool:
        fb = route.fallback_route
        return fb is not None and fb not in used and fb in self._config.routes


def first_free(tried: list[hl.Health], untried: list[Rejection], now: float) -> float | None:
    """After every attempt failed, when a key can first serve the request again: the
    earliest of the tried keys' recoveries (cool-down, depletion) and the time each other
    key could serve it (its own state and every limit it does not fit: see
    :class:`Rejection`); ``None`` when none does by itself."""
    times = [r.available_at for r in untried]
    for h in tried:
        at = hl.available_at(h, now)
        times.append(now if at is None and not h.disabled_reason else at)
    known = [t for t in times if t is not None]
    return min(known) if known else None


def with_defaults(
    provider: Provider, req: ChatRequest, planned_max_tokens: int
) -> tuple[dict[str, Any], int]:
    """The body and max_tokens sent to ``provider``: its request defaults (seed 003's
    OPENAI_TEMPERATURE, OPENAI_MAX_TOKENS) fill what the request leaves unset."""
    defaults = provider.request_defaults
    if not defaults:
        return req.body, planned_max_tokens
    body = {**{k: v for k, v in defaults.items() if k != "max_tokens"}, **req.body}
    default_max = defaults.get("max_tokens")
    if req.max_tokens is None and default_max is not None:
        planned_max_tokens = min(planned_max_tokens, int(default_max))
    return body, planned_max_tokens


def refused_by_filter(body: dict[str, Any]) -> bool:
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


def error_kind_of(exc: QuotaflowError) -> str:
    """A bounded name for why a request failed: ``QuotaExhausted`` → ``quota_exhausted``."""
    return _CAMEL.sub("_", type(exc).__name__).lower()


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
