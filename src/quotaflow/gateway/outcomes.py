"""What a call produces and how it fails: the caller's context, each attempt, the outcome
of a plain call, the end of a stream, and the errors a request ends with."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quotaflow.adapters.base import UpstreamFailure
from quotaflow.engine import health as hl
from quotaflow.engine.candidates import Rejection
from quotaflow.engine.catalog import Key
from quotaflow.engine.durations import human_duration
from quotaflow.engine.limits import Limit
from quotaflow.errors import (
    BadRequest,
    ClientGone,
    KeyRejected,
    QuotaExhausted,
    QuotaflowError,
    UnsupportedByProtocol,
    UpstreamError,
)
from quotaflow.types import ErrorKind, Usage


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling and what extra limits apply (an agent's budgets)."""

    agent: str = "default"
    limits: tuple[Limit, ...] = ()
    forced_provider: str | None = None  # overrides the gateway-wide forced provider
    door: str = "library"  # the door it came in by (chat, messages, responses, embeddings,
    # gemini: kept in the ledger and the metrics) or "library" for in-process calls
    traceparent: str | None = None  # the caller's W3C trace context, continued by the spans
    # Whether the client is still there to read the answer (the web: its connection is
    # open); None: it always is (an in-process call).
    connected: Callable[[], bool] | None = None

    def gone(self) -> bool:
        """The client went away: nothing more is sent upstream for it."""
        return self.connected is not None and not self.connected()


@dataclass(slots=True)
class Attempt:
    provider: str
    key_id: str
    model: str
    outcome: str
    error_kind: str | None = None
    http_status: int | None = None
    message: str | None = None
    retry_after_s: float | None = None  # what the provider said to wait, if it did


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
class StreamEnd:
    """How a stream ended, for its booking: ``status`` is ``ok`` or ``aborted``."""

    usage: Usage
    latency_ms: float
    ttfb_ms: float | None
    status: str
    failure: UpstreamFailure | None
    detail: str | None


def client_gone(during: str) -> ClientGone:
    """The client closed its connection ``during`` ("while it waited for headroom"): the
    request goes no further."""
    return ClientGone(
        f"The client closed its connection {during}: the request was not sent upstream "
        "after that and is not charged."
    )


def keys_rejected(why: list[str]) -> KeyRejected:
    """No key left but ones the provider rejected: say so, not that a quota ran out."""
    return KeyRejected(
        "The provider rejected the key(s) that could serve this request, so no request can "
        "succeed until an operator replaces or re-enables them: " + "; ".join(sorted(set(why)))
    )


def exhausted_error(
    rejected: list[Rejection], first_free: float | None, now: float
) -> QuotaExhausted | KeyRejected:
    if rejected and all(r.reason.startswith(hl.INVALID_PREFIX) for r in rejected):
        return keys_rejected([f"{r.provider}/{r.key_id}: {r.reason}" for r in rejected])
    full = sorted({lid for r in rejected for lid in (r.limit_id, r.waits_for) if lid})
    other = sorted({f"{r.provider}/{r.key_id}: {r.reason}" for r in rejected if not r.limit_id})
    if not rejected:
        msg = "No key is configured for this model."
    elif not other and all(_is_agent(lid) for lid in full):
        msg = "This agent's budget is used up (full limits: " + ", ".join(full) + ")."
    else:
        parts = []
        if full:
            parts.append("full limits: " + ", ".join(full))
        if other:
            parts.append("unavailable keys: " + "; ".join(other))
        msg = "Every key for this request is out of headroom (" + "; ".join(parts) + ")."
    if any(r.held for r in rejected):
        msg += (
            " Part of that is held by requests in flight, reserved at their worst case (a "
            "request without max_tokens reserves up to what the model can write: set "
            "max_tokens to reserve less); it frees as they finish."
        )
    headers: dict[str, str] = {}
    details: dict[str, Any] = {
        "full_limits": full,
        "rejected": [
            {
                "provider": r.provider,
                "key": r.key_id,
                "model": r.model,
                "reason": r.reason,
                "available_at": r.available_at,
                "waits_for": r.waits_for,
            }
            for r in rejected
        ],
    }
    if first_free is not None and math.isfinite(first_free):
        secs = max(first_free - now, 0.0)
        msg += _first_frees(rejected, first_free, human_duration(secs))
        headers["retry-after"] = str(max(math.ceil(secs), 1))
        details["first_frees_at"] = first_free
        details["first_frees_in_s"] = round(secs, 3)
    else:
        once = any(lid.endswith("/once") for lid in full)
        msg += (
            " None frees by itself: a one-time quota was used up; reset it or add a key."
            if once
            else " None frees by itself: enable, reset or add a key."
        )
    return QuotaExhausted(msg, headers=headers, details=details)


def _first_frees(rejected: list[Rejection], first_free: float, within: str) -> str:
    """When a request can first be served, and what it waits for when a key waits for more
    than its own state or the limit it is named by: an agent's budget binds on every key,
    so the client is told it is the agent's."""
    first = next((r for r in rejected if r.available_at == first_free), None)
    waits = first.waits_for if first is not None else None
    if waits is None:
        return f" The first frees in {within}."
    if _is_agent(waits):
        agent, _, provider = waits.partition("/")[0].removeprefix("agent:").partition("@")
        where = f"every {provider} key" if provider else "every key"
        return (
            f" The first frees in {within}, when agent {agent}'s budget {waits} frees "
            f"(it applies to {where})."
        )
    if first is not None and waits == first.limit_id:
        return f" The first frees in {within}."
    return f" The first frees in {within}, when {waits} frees."


def _is_agent(limit_id: str) -> bool:
    return limit_id.startswith("agent:")


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


def all_failed(
    attempts: list[Attempt], first_free: float | None = None, now: float = 0.0
) -> QuotaflowError:
    """The error a request ends with when every attempt failed. ``first_free``: when a key
    can first serve it again as the gateway sees it (the tried keys' cool-downs and
    depletions, the other keys' headroom), for a refusal for rate or quota."""
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
    details: dict[str, Any] = {"attempts": [attempt_dict(a) for a in attempts]}
    if kinds == {ErrorKind.AUTH.value}:
        rejected = keys_rejected(
            [f"{a.provider}/{a.key_id}: {hl.INVALID_PREFIX}{a.message or ''}" for a in attempts]
        )
        rejected.details = details
        return rejected
    if kinds <= {"rate_limited", "quota_exhausted"}:
        # Every key said "not now": the client waits until a key can serve again (a key the
        # provider called empty stays out until its window resets, whatever it asked), else
        # as long as the soonest of them asked; when only rate limits refused, it is
        # OpenAI's own rate_limit_exceeded.
        msg = f"Every provider tried refused for rate or quota: {summary}"
        headers = None
        if first_free is not None and math.isfinite(first_free):
            secs = max(first_free - now, 0.0)
            msg += f". The first frees in {human_duration(secs)}."
            headers = {"retry-after": str(max(math.ceil(secs), 1))}
            details["first_frees_at"] = first_free
            details["first_frees_in_s"] = round(secs, 3)
        else:
            waits = [a.retry_after_s for a in attempts if a.retry_after_s is not None]
            headers = {"retry-after": str(max(math.ceil(min(waits)), 1))} if waits else None
        return QuotaExhausted(
            msg,
            details=details,
            headers=headers,
            code="rate_limit_exceeded" if kinds == {"rate_limited"} else None,
        )
    return UpstreamError(f"All {len(attempts)} attempts failed: {summary}", details=details)
