"""The one object the gateway reports to: per request :meth:`Observer.begin`, per booked
attempt :meth:`Observer.attempt`, at the end :meth:`Observer.finish`.

From those three calls come the access line, the Prometheus counters and histograms, the
OpenTelemetry spans and the recent refusals and failures the dashboard lists. Each part can
be off: metrics (``QUOTAFLOW_METRICS=off``), tracing (no ``otel`` extra or no ``OTEL_*``
exporter set), the access line (log level above ``info``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from quotaflow.clock import Clock, SystemClock
from quotaflow.engine.pricing import COST_ESTIMATED
from quotaflow.observability.logs import ACCESS_LOGGER, EventLog, log_access
from quotaflow.observability.metrics import Metrics

if TYPE_CHECKING:
    from quotaflow.observability.tracing import Tracing

METRICS_ENV: Final = "QUOTAFLOW_METRICS"
RECENT_ROWS: Final = 100
FLUSH_S: Final = 1.0  # metrics counted since are handed to prometheus_client at most this late
OTEL_EXTRA_HINT: Final = "install the extra: pip install 'quotaflow[otel]'"

log = logging.getLogger("quotaflow.observability")


class BookedAttempt(Protocol):
    """What a finished attempt's ledger row tells (``storage.base.LedgerRow`` fits)."""

    @property
    def provider(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def http_status(self) -> int | None: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def ttfb_ms(self) -> float | None: ...
    @property
    def detail(self) -> str | None: ...


@dataclass(slots=True)
class RequestObs:
    """One request as it goes: where it came from and what its attempts added up to."""

    door: str
    agent: str
    route: str
    stream: bool
    started_mono: float
    started_wall: float
    request_id: str = ""
    provider: str = ""
    key: str = ""
    model: str = ""
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    upstream_s: float = 0.0
    ttfb_ms: float | None = None
    span: Any = None  # the server span, when tracing is on
    extra: dict[str, Any] = field(default_factory=dict)


def metrics_wanted() -> bool:
    return os.environ.get(METRICS_ENV, "on").strip().lower() not in ("0", "off", "false", "no")


def tracing_wanted() -> bool:
    """An exporter is configured through the standard ``OTEL_*`` variables."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracing_from_env(events: EventLog | None = None) -> Tracing | None:
    """Spans exported as the ``OTEL_*`` variables say, or None (not asked for, or the
    ``otel`` extra is missing: then one warning says how to install it)."""
    if not tracing_wanted():
        return None
    try:
        from quotaflow.observability.tracing import Tracing
    except ImportError:
        (events or EventLog()).warn(
            "tracing_unavailable",
            "otel",
            "OTEL_* variables ask for traces but OpenTelemetry is not installed",
            hint=OTEL_EXTRA_HINT,
        )
        return None
    return Tracing()


UNPRICED_MAX = 200  # unpriced models remembered (and shown on the dashboard) at most


class Observer:
    """Turns the gateway's reports into logs, metrics and spans."""

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.clock = clock or SystemClock()
        self.events = events or EventLog(self.clock)
        self.access = logging.getLogger(ACCESS_LOGGER)
        # Requests that ended without an answer, newest last: refusals leave no ledger row.
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ROWS)
        # Models booked at a stand-in price, and what was said about each (once); at most
        # UNPRICED_MAX of them, the oldest forgotten first (model names come from callers).
        self.unpriced_models: dict[tuple[str, str], str] = {}
        self.open: dict[str, RequestObs] = {}  # requests under way, by request id
        self._flushed_at = self.clock.monotonic()

    @classmethod
    def from_env(cls, clock: Clock | None = None) -> Observer:
        events = EventLog(clock)
        return cls(
            metrics=Metrics() if metrics_wanted() else None,
            tracing=tracing_from_env(events),
            events=events,
            clock=clock,
        )

    def begin(
        self,
        door: str,
        agent: str,
        route: str,
        *,
        stream: bool = False,
        traceparent: str | None = None,
        request_id: str = "",
    ) -> RequestObs:
        """A request starts; its attempts are matched to it by ``request_id`` (:meth:`booked`)."""
        req = RequestObs(door, agent, route, stream, self.clock.monotonic(), self.clock.now())
        req.request_id = request_id
        if request_id:
            self.open[request_id] = req
        if stream and self.metrics is not None:
            self.metrics.streams.inc()
        if self.tracing is not None:
            req.span = self.tracing.server_span(
                f"chat {route}",
                req.started_wall,
                traceparent,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": route,
                    "quotaflow.door": door,
                    "quotaflow.agent": agent,
                },
            )
        return req

    def booked(self, row: BookedAttempt, request_id: str) -> None:
        """A ledger row was booked: an attempt of an open request, or use booked after the
        fact (a key-tester probe, a reported use), which counts in the metrics only."""
        req = self.open.get(request_id)
        if req is not None:
            self.attempt(req, row)
        elif self.metrics is not None:
            kind = row.error_kind or ""
            self.metrics.attempt(row.provider, row.key_id, row.model, row.status, kind)
            self.metrics.use(
                row.provider,
                row.key_id,
                row.model,
                row.prompt_tokens,
                row.completion_tokens,
                row.cached_tokens,
                row.cost_usd,
            )

    def waited(self, seconds: float) -> None:
        """A request waited ``seconds`` for a window to free headroom."""
        if self.metrics is not None:
            self.metrics.reservation_wait.observe(seconds)

    def attempt(self, req: RequestObs, row: BookedAttempt) -> None:
        """One attempt booked in the ledger (ok or failed)."""
        req.attempts += 1
        req.provider, req.key, req.model = row.provider, row.key_id, row.model
        req.prompt_tokens += row.prompt_tokens
        req.completion_tokens += row.completion_tokens
        req.cost_usd += row.cost_usd
        seconds = (row.latency_ms or 0.0) / 1000.0
        req.upstream_s += seconds
        if row.ttfb_ms is not None:
            req.ttfb_ms = row.ttfb_ms
        ok = row.status == "ok"
        kind = row.error_kind or ""
        if ok and (row.detail or "").startswith(COST_ESTIMATED):
            self.unpriced(row.provider, row.model, row.detail or COST_ESTIMATED)
        m = self.metrics
        if m is not None:
            m.attempt(row.provider, row.key_id, row.model, row.status, kind)
            m.use(
                row.provider,
                row.key_id,
                row.model,
                row.prompt_tokens,
                row.completion_tokens,
                row.cached_tokens,
                row.cost_usd,
            )
            if row.latency_ms is not None:
                m.upstream_time(row.provider, row.model, seconds)
        if self.tracing is not None and req.span is not None:
            end = self.clock.now()
            self.tracing.client_span(
                req.span,
                f"chat {row.model}",
                end - seconds,
                end,
                _attempt_attrs(req, row),
                None if ok else kind or "error",
            )

    def key_cooling(self, provider: str, key_id: str, retry_after_s: float | None) -> None:
        """A key was rate-limited: it cools down (for the provider's Retry-After, if sent)."""
        wait = "" if retry_after_s is None else f" for {retry_after_s:g} s (its Retry-After)"
        fields: dict[str, Any] = {} if retry_after_s is None else {"retry_after_s": retry_after_s}
        self.events.warn(
            "key_cooling",
            f"{provider}/{key_id}",
            f"key {key_id} of {provider} was rate-limited: it cools down{wait} before it is "
            "tried again",
            hint="requests move to other keys meanwhile; lower its limits if this repeats",
            **fields,
        )

    def key_invalid(self, provider: str, key_id: str, reason: str) -> None:
        """The provider rejected a key (401/403): it is skipped until enabled again."""
        self.events.clear("key_enabled", f"{provider}/{key_id}")
        self.events.warn(
            "key_invalid",
            f"{provider}/{key_id}",
            f"key {key_id} of {provider} is invalid (the provider rejected it: {reason}); "
            "it is not used until it is enabled again",
            hint=f"replace its secret, then enable it: quotaflow keys enable {key_id} "
            "(or the dashboard's key switch)",
        )

    def key_enabled(self, provider: str, key_id: str, was: str) -> None:
        """An operator enabled a key that was invalid or disabled (``was`` says why)."""
        self.events.clear("key_invalid", f"{provider}/{key_id}")
        self.events.warn(
            "key_enabled",
            f"{provider}/{key_id}",
            f"key {key_id} of {provider} enabled again (it was {was}): requests are routed to it",
            level=logging.INFO,
        )

    def unpriced(self, provider: str, model: str, how: str) -> None:
        """Warn once per model with no known price (its cost is a stand-in, ``how``): in the
        server's log and, through :attr:`unpriced_models`, on the dashboard."""
        if (provider, model) in self.unpriced_models:
            return
        message = f"no known price for {provider}/{model}: {how}"
        while len(self.unpriced_models) >= UNPRICED_MAX:
            del self.unpriced_models[next(iter(self.unpriced_models))]
        self.unpriced_models[(provider, model)] = message
        self.events.warn(
            "unpriced_model",
            f"{provider}/{model}",
            message,
            hint="give it input/output prices (USD per million tokens) under the provider's "
            "models; reports mark the costs it adds as estimated",
        )

    def refused(self, door: str, status: int, error_kind: str, message: str) -> None:
        """A request turned away before it was routed (bad input, no credentials, an unknown
        model): its access line and request count."""
        req = RequestObs(door, "-", "", False, self.clock.monotonic(), self.clock.now())
        self.finish(req, status, error_kind, message)

    def end(self, request_id: str, status: int, error_kind: str | None = None) -> None:
        """The request ``request_id`` ended (a stream, once its last chunk is relayed)."""
        req = self.open.get(request_id)
        if req is not None:
            self.finish(req, status, error_kind)

    def finish(
        self,
        req: RequestObs,
        status: int,
        error_kind: str | None = None,
        message: str | None = None,
    ) -> None:
        """The request is answered (``status`` 200) or refused / failed with ``status``."""
        mono = self.clock.monotonic()
        elapsed = mono - req.started_mono
        kind = error_kind or ""
        self.open.pop(req.request_id, None)
        m = self.metrics
        if m is not None:
            if req.stream:
                m.streams.dec()
            m.request(req.door, req.route, req.provider, req.key, req.model, status, kind)
            m.overhead_time(req.door, max(elapsed - req.upstream_s, 0.0))
            if status == 429 and req.attempts == 0:
                m.refusals.labels(req.route).inc()
            if mono - self._flushed_at >= FLUSH_S:  # replicas' shared files stay fresh
                self._flushed_at = mono
                _after_this_turn(m.flush)
        if status == 429 and req.attempts == 0:
            self.events.warn(
                "all_keys_refused",
                req.route,
                f"no key had headroom for route {req.route}: request refused with 429",
                hint="add a key or raise a limit; the answer's Retry-After says when one frees",
            )
        if self.access.isEnabledFor(logging.INFO):
            log_access(self.access, "request", access_fields(req, status, kind, elapsed))
        if status >= 400:
            self.recent.append(
                {
                    "ts": req.started_wall,
                    "request_id": req.request_id,
                    "agent": req.agent,
                    "route": req.route,
                    "provider": req.provider,
                    "key_id": req.key,
                    "model": req.model,
                    "status": "refused" if req.attempts == 0 else "failed",
                    "http_status": status,
                    "error_kind": kind or None,
                    "attempts": req.attempts,
                    "detail": (message or "")[:200] or None,
                    "stream": req.stream,
                }
            )
        if self.tracing is not None and req.span is not None:
            attrs: dict[str, Any] = {
                "http.response.status_code": status,
                "quotaflow.attempts": req.attempts,
                "quotaflow.request_id": req.request_id,
                "gen_ai.usage.input_tokens": req.prompt_tokens,
                "gen_ai.usage.output_tokens": req.completion_tokens,
            }
            if req.model:
                attrs["gen_ai.response.model"] = req.model
            self.tracing.end(
                req.span, self.clock.now(), attrs, kind or None if status >= 400 else None
            )

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.flush()
        if self.tracing is not None:
            self.tracing.close()


def _after_this_turn(work: Callable[[], None]) -> None:
    """Run ``work`` once the event loop has run what is ready (the answer being written),
    not inside the request that happened to cross the interval; at once with no loop."""
    try:
        asyncio.get_running_loop().call_soon(work)
    except RuntimeError:
        work()


def access_fields(
    req: RequestObs, status: int, error_kind: str, elapsed_s: float
) -> dict[str, Any]:
    """The access line's fields: names and numbers only, never a secret or prompt text."""
    return {
        "request_id": req.request_id,
        "door": req.door,
        "agent": req.agent,
        "route": req.route,
        "provider": req.provider or None,
        "key": req.key or None,
        "model": req.model or None,
        "status": status,
        "error_kind": error_kind or None,
        "attempts": req.attempts,
        "stream": req.stream,
        "prompt_tokens": req.prompt_tokens,
        "completion_tokens": req.completion_tokens,
        "cost_usd": round(req.cost_usd, 8),
        "ms": round(elapsed_s * 1000.0, 1),
        "ttfb_ms": None if req.ttfb_ms is None else round(req.ttfb_ms, 1),
    }


def _attempt_attrs(req: RequestObs, row: BookedAttempt) -> dict[str, str | int | float | bool]:
    attrs: dict[str, str | int | float | bool] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": row.provider,
        "gen_ai.request.model": row.model,
        "gen_ai.usage.input_tokens": row.prompt_tokens,
        "gen_ai.usage.output_tokens": row.completion_tokens,
        "quotaflow.key": row.key_id,
        "quotaflow.outcome": row.status,
        "quotaflow.attempt": req.attempts,
    }
    if row.error_kind:
        attrs["error.type"] = row.error_kind
    if row.http_status is not None:
        attrs["http.response.status_code"] = row.http_status
    return attrs
