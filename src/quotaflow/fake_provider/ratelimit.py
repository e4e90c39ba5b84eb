"""Per-key requests/tokens per minute over a fixed 60 s window.

A key's window opens at its first request and lasts :data:`WINDOW_S` seconds of the event
loop's monotonic clock; the next request after that opens a new one. A request is refused
when the window already holds ``rpm`` requests, or ``tpm`` tokens (so, as with quotas, the
request that crosses ``tpm`` is still served). Refused requests do not count.
Usage is tracked even without limits so the rate-limit headers always have numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WINDOW_S = 60.0

LimitKind = Literal["requests", "tokens"]


@dataclass(slots=True)
class Window:
    """One key's usage inside its current window."""

    start: float
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    def reset_in(self, now: float) -> float:
        """Seconds until this window closes."""
        return max(0.0, self.start + WINDOW_S - now)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was rate-limited and how long until it would pass."""

    kind: LimitKind
    limit: int
    used: int
    retry_after_s: float


class RateLimiter:
    """The windows of all keys."""

    __slots__ = ("_windows",)

    def __init__(self) -> None:
        self._windows: dict[str, Window] = {}

    def clear(self) -> None:
        """Forget every window."""
        self._windows.clear()

    def window(self, key: str, now: float) -> Window:
        """``key``'s current window, opening a new one when the last has closed."""
        w = self._windows.get(key)
        if w is None or now >= w.start + WINDOW_S:
            w = self._windows[key] = Window(start=now)
        return w

    def admit(self, key: str, now: float, rpm: int | None, tpm: int | None) -> Refusal | None:
        """Count one request for ``key``, or return why it is refused (then nothing counts)."""
        w = self.window(key, now)
        if rpm is not None and w.requests >= rpm:
            return Refusal("requests", rpm, w.requests, w.reset_in(now))
        if tpm is not None and w.tokens >= tpm:
            return Refusal("tokens", tpm, w.tokens, w.reset_in(now))
        w.requests += 1
        return None

    def charge(self, key: str, now: float, input_tokens: int, output_tokens: int) -> None:
        """Add a served request's tokens to ``key``'s window."""
        w = self.window(key, now)
        w.input_tokens += input_tokens
        w.output_tokens += output_tokens
