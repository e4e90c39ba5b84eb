"""Small shared value types.

The values made on every request (:class:`Usage`, :class:`Measure`, :class:`RateInfo`, and
the engine's ``LimitUsage``, ``Claim``, ``Plan``, …) are ``slots`` dataclasses but not
frozen ones: a frozen dataclass's ``__init__`` sets every field through
``object.__setattr__``, about five times the cost, and nothing hashes them. They are values
all the same: never change one after it is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Metric = Literal["tokens", "requests", "cost"]
Protocol = Literal["openai", "anthropic", "gemini"]
METRICS: tuple[Metric, ...] = ("tokens", "requests", "cost")


class State(StrEnum):
    """Seed 000's quota states, by used share: OK < 80 % ≤ WARNING < 90 % ≤ CRITICAL < 100 % ≤ DEPLETED."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    DEPLETED = "depleted"
    INVALID = "invalid"  # the provider rejected the key (401/403): not a quota state
    DISABLED = "disabled"  # an operator disabled the key (or every key): not a quota state
    COOLING = "cooling"  # no key can serve for now: rate limited or failing, not out of quota


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class Usage:
    """Tokens of one answer as the provider reported them (or as estimated, when ``estimated``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class Measure:
    """What one attempt consumed, in every metric a limit can count."""

    tokens: float = 0.0
    requests: float = 0.0
    cost: float = 0.0

    def of(self, metric: Metric) -> float:
        if metric == "tokens":
            return self.tokens
        if metric == "requests":
            return self.requests
        return self.cost


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # retry elsewhere now, this key after retry-after
    QUOTA_EXHAUSTED = "quota_exhausted"  # this key is empty until its window resets
    AUTH = "auth"  # the key is dead: disable it
    BAD_REQUEST = "bad_request"  # the client's fault: return as is, don't retry
    NOT_FOUND = "not_found"  # model unknown to this provider: try another deployment
    CONTEXT_TOO_LONG = "context_too_long"  # try a deployment with a larger window
    CONTENT_FILTERED = "content_filtered"
    SERVER_ERROR = "server_error"  # 5xx, overload: retry elsewhere
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MALFORMED = "malformed"  # the provider answered something unreadable
    UNSUPPORTED = "unsupported"  # the protocol can't express the request: try another protocol

    @property
    def retryable(self) -> bool:
        return self not in (ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTERED)


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class RateInfo:
    """What the provider's own headers say about the key's rate limits."""

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_s: float | None = None
