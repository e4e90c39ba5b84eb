"""The fake provider's knobs (:class:`FakeProviderConfig`) and per-key state (:class:`KeyState`).

Both are plain mutable dataclasses on purpose: the running server reads them on every
request, so a test may change ``handle.state.config.latency_ms`` or a key's
``quota_tokens`` between two calls and the next request sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProtocolName = Literal["openai", "anthropic", "gemini"]
PROTOCOLS: tuple[ProtocolName, ...] = ("openai", "anthropic", "gemini")


@dataclass
class KeyState:
    """One API key the fake provider knows.

    ``quota_tokens`` is a lifetime budget of prompt + completion tokens (``None`` = unlimited).
    A request is served while ``used_tokens < quota_tokens`` (it may end slightly over, as
    with real providers); the next one gets the protocol's "quota exhausted" error. An
    ``invalid`` key gets the protocol's authentication error.
    """

    quota_tokens: int | None = None
    used_tokens: int = 0
    requests: int = 0
    invalid: bool = False

    def is_exhausted(self) -> bool:
        """True once the key's lifetime quota is used up."""
        return self.quota_tokens is not None and self.used_tokens >= self.quota_tokens


@dataclass
class FakeProviderConfig:
    """How the fake provider behaves; every field can be changed while it runs.

    ``keys=None`` accepts any non-empty key with unlimited quota; a dict accepts only those
    keys (any other key gets the protocol's auth error). ``rpm``/``tpm`` are per-key limits
    over a fixed 60 s window; exceeding one gives the protocol's rate-limit 429.
    """

    protocol: ProtocolName = "openai"
    keys: dict[str, KeyState] | None = None
    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    completion_tokens: int = 16
    rpm: int | None = None
    tpm: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}"
            )
