"""Per key × model statistics: what the learning strategies rank on, and seed 004's ``apiStats``.

One :class:`ModelStats` per ``(key_id, model)`` keeps two views of the same outcomes:

* **cumulative** counts for reports, in seed 004's fields (``status``, ``avgResponseTime``,
  ``successCount``, ``failCount``, ``totalTokensUsed``, ``qualityScore``, ``lastSuccess``,
  ``lastError``);
* **time-decayed** evidence for routing: success and failure counts that halve every
  ``half_life_s`` seconds (so what happened a minute ago outweighs what happened an hour
  ago) and are capped at ``window`` outcomes together (so that at any traffic rate the last
  few dozen calls decide: a provider that starts failing is noticed within tens of
  requests, not after its whole history), a latency EWMA with a p95 over the last :data:`LATENCY_WINDOW` calls, a time-to-first-
  token EWMA, and the quality score (running mean of feedback).

Functions here are pure: the caller passes the time (and the half-life) in. Failures that are
the request's fault (bad request, context too long, content filtered, unknown model) are not
held against the key × model, as in :mod:`quotaflow.engine.health`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from quotaflow.types import ErrorKind

EWMA_ALPHA = 0.2
LATENCY_WINDOW = 64  # calls the p95 is taken over
DEFAULT_HALF_LIFE_S = 60.0
DEFAULT_WINDOW = 12.0  # outcomes the decayed evidence holds at most
_MINUS_LN2 = -math.log(2.0)
REQUEST_FAULTS = frozenset(
    {
        ErrorKind.BAD_REQUEST.value,
        ErrorKind.CONTEXT_TOO_LONG.value,
        ErrorKind.CONTENT_FILTERED.value,
        ErrorKind.NOT_FOUND.value,
    }
)


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class Outcome:
    """One attempt's result as the statistics see it."""

    ok: bool
    latency_ms: float | None = None
    ttft_ms: float | None = None  # time to first token (streams)
    tokens: int = 0
    error_kind: str | None = None  # an :class:`ErrorKind` value on failure
    error: str | None = None  # a short message on failure


@dataclass(slots=True)
class ModelStats:
    """Statistics of one key × model (see the module docstring for the two views)."""

    provider: str
    key_id: str
    model: str
    # cumulative (seed 004's apiStats)
    success_count: int = 0
    fail_count: int = 0
    avg_response_ms: float | None = None  # running mean over successful calls
    total_tokens: int = 0
    quality_score: float | None = None  # running mean of feedback scores (0 … 1)
    quality_samples: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_error_kind: str | None = None
    last_used: float | None = None
    # time-decayed evidence (routing)
    decayed_successes: float = 0.0
    decayed_failures: float = 0.0
    decayed_at: float | None = None  # the instant the decayed counts are valid at
    latency_ewma_ms: float | None = None
    ttft_ewma_ms: float | None = None
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def status(self) -> str:
        """Seed 004's status: ``working`` / ``failing`` by the last outcome, or ``untested``."""
        if self.last_used is None:
            return "untested"
        if self.last_error_at is not None and (
            self.last_success is None or self.last_error_at > self.last_success
        ):
            return "failing"
        return "working"

    @property
    def success_rate(self) -> float | None:
        """Cumulative share of successful calls (``None`` before any)."""
        n = self.success_count + self.fail_count
        return self.success_count / n if n else None

    @property
    def latency_p95_ms(self) -> float | None:
        """95th percentile of the last :data:`LATENCY_WINDOW` successful calls' latency."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def to_seed004(self) -> dict[str, Any]:
        """The record in seed 004's ``apiStats.json`` field names."""
        return {
            "status": self.status,
            "avgResponseTime": None
            if self.avg_response_ms is None
            else round(self.avg_response_ms),
            "successCount": self.success_count,
            "failCount": self.fail_count,
            "totalTokensUsed": self.total_tokens,
            "qualityScore": self.quality_score,
            "lastSuccess": self.last_success,
            "lastError": self.last_error,
        }

    def to_record(self) -> dict[str, Any]:
        """Every field as JSON-ready values (what a :class:`StatsStore` persists)."""
        return {
            "provider": self.provider,
            "key_id": self.key_id,
            "model": self.model,
            "success_count": self.success_count,
            "fail_count": self.fail_count,
            "avg_response_ms": self.avg_response_ms,
            "total_tokens": self.total_tokens,
            "quality_score": self.quality_score,
            "quality_samples": self.quality_samples,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_error_kind": self.last_error_kind,
            "last_used": self.last_used,
            "decayed_successes": self.decayed_successes,
            "decayed_failures": self.decayed_failures,
            "decayed_at": self.decayed_at,
            "latency_ewma_ms": self.latency_ewma_ms,
            "ttft_ewma_ms": self.ttft_ewma_ms,
            "latencies": list(self.latencies),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ModelStats:
        """The inverse of :meth:`to_record`; unknown fields are ignored, missing ones default."""
        s = cls(str(rec["provider"]), str(rec["key_id"]), str(rec["model"]))
        for name in (
            "success_count",
            "fail_count",
            "total_tokens",
            "quality_samples",
        ):
            setattr(s, name, int(rec.get(name) or 0))
        for name in ("decayed_successes", "decayed_failures"):
            setattr(s, name, float(rec.get(name) or 0.0))
        for name in (
            "avg_response_ms",
            "quality_score",
            "last_success",
            "last_error_at",
            "last_used",
            "decayed_at",
            "latency_ewma_ms",
            "ttft_ewma_ms",
        ):
            v = rec.get(name)
            setattr(s, name, None if v is None else float(v))
        for name in ("last_error", "last_error_kind"):
            v = rec.get(name)
            setattr(s, name, None if v is None else str(v))
        s.latencies.extend(float(x) for x in rec.get("latencies") or ())
        return s


def _ewma(old: float | None, x: float) -> float:
    return x if old is None else old + EWMA_ALPHA * (x - old)


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    """How much of a count survives ``elapsed_s`` seconds: ``0.5 ** (elapsed / half-life)``."""
    if elapsed_s <= 0.0:
        return 1.0
    return math.exp(_MINUS_LN2 * elapsed_s / half_life_s)


def decayed_counts(s: ModelStats, now: float, half_life_s: float) -> tuple[float, float]:
    """The time-decayed ``(successes, failures)`` as of ``now``."""
    if s.decayed_at is None:
        return s.decayed_successes, s.decayed_failures
    f = decay_factor(now - s.decayed_at, half_life_s)
    return s.decayed_successes * f, s.decayed_failures * f


def reliability(s: ModelStats | None, now: float, half_life_s: float) -> float:
    """Decayed success rate with a Beta(1, 1) prior: ``(S + 1) / (S + F + 2)``; 0.5 unseen."""
    if s is None:
        return 0.5
    succ, fail = decayed_counts(s, now, half_life_s)
    return (succ + 1.0) / (succ + fail + 2.0)


def observe(
    s: ModelStats,
    outcome: Outcome,
    now: float,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    window: float = DEFAULT_WINDOW,
) -> None:
    """Book one attempt's outcome at ``now`` into both views; the decayed evidence keeps
    at most ``window`` outcomes (older ones scaled down in proportion)."""
    s.last_used = now
    if outcome.ok:
        s.success_count += 1
        s.total_tokens += outcome.tokens
        s.last_success = now
        if outcome.latency_ms is not None:
            lat = outcome.latency_ms
            prev = s.avg_response_ms
            s.avg_response_ms = lat if prev is None else prev + (lat - prev) / s.success_count
            s.latency_ewma_ms = _ewma(s.latency_ewma_ms, lat)
            s.latencies.append(lat)
        if outcome.ttft_ms is not None:
            s.ttft_ewma_ms = _ewma(s.ttft_ewma_ms, outcome.ttft_ms)
        _add_evidence(s, now, half_life_s, window, 1.0, 0.0)
        return
    s.last_error = (outcome.error or outcome.error_kind or "error")[:300]
    s.last_error_at = now
    s.last_error_kind = outcome.error_kind
    if outcome.error_kind in REQUEST_FAULTS:
        return  # the request's fault, not the key × model's
    s.fail_count += 1
    _add_evidence(s, now, half_life_s, window, 0.0, 1.0)


def _add_evidence(
    s: ModelStats, now: float, half_life_s: float, window: float, succ: float, fail: float
) -> None:
    old_s, old_f = s.decayed_successes, s.decayed_failures
    if s.decayed_at is not None:  # decayed_counts(s, now, half_life_s), inline
        f = decay_factor(now - s.decayed_at, half_life_s)
        old_s, old_f = old_s * f, old_f * f
    held = old_s + old_f
    if held > window - 1.0 > 0.0:  # make room: the new outcome weighs 1 / window
        keep = (window - 1.0) / held
        old_s, old_f = old_s * keep, old_f * keep
    s.decayed_successes = old_s + succ
    s.decayed_failures = old_f + fail
    s.decayed_at = now if s.decayed_at is None else max(now, s.decayed_at)


def observe_quality(s: ModelStats, score: float, *, success: bool = True) -> float:
    """Seed 004's ``updateQualityScore``: fold one feedback score (0 … 1) into the running
    mean; a failed task counts as quality 0. Returns the new quality score."""
    if not (isinstance(score, int | float) and 0.0 <= score <= 1.0):
        raise ValueError(f"a quality score is between 0 and 1, not {score!r}")
    value = float(score) if success else 0.0
    n = s.quality_samples
    s.quality_score = value if s.quality_score is None else (s.quality_score * n + value) / (n + 1)
    s.quality_samples = n + 1
    return s.quality_score


def to_json(s: ModelStats, now: float, half_life_s: float) -> dict[str, Any]:
    """The seed 004 record plus the learning view (p95, ttft, decayed reliability)."""
    succ, fail = decayed_counts(s, now, half_life_s)
    return {
        "provider": s.provider,
        "key": s.key_id,
        "model": s.model,
        **s.to_seed004(),
        "lastErrorAt": s.last_error_at,
        "latencyEwmaMs": s.latency_ewma_ms,
        "latencyP95Ms": s.latency_p95_ms,
        "ttftEwmaMs": s.ttft_ewma_ms,
        "qualitySamples": s.quality_samples,
        "recentSuccesses": round(succ, 3),
        "recentFailures": round(fail, 3),
        "reliability": round(reliability(s, now, half_life_s), 4),
    }


@dataclass(slots=True)
class SessionTotals:
    """Seed 004's session summary: the requests an engine routed since it was made."""

    requests: int = 0
    successes: int = 0
    failures: int = 0
    total_tokens: int = 0

    def book(self, ok: bool, tokens: int = 0) -> None:
        """Count one finished request (answered or not) and the tokens it used."""
        self.requests += 1
        self.total_tokens += tokens
        if ok:
            self.successes += 1
        else:
            self.failures += 1

    def summary(self) -> dict[str, Any]:
        """``{"requests", "successes", "failures", "totalTokens", "successRate"}`` as in the
        seed (``successRate`` a share rounded to 3 places, 0 before any request)."""
        rate = self.successes / self.requests if self.requests else 0.0
        return {
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "totalTokens": self.total_tokens,
            "successRate": round(rate, 3),
        }
