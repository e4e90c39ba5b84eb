"""The live state of one fake provider: its config, key usage, faults, windows and stats.

``handle.state`` in tests is this object; everything on it may be read or changed while
the server runs (it is only ever touched from the event loop's thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from quotaflow.clock import SystemClock
from quotaflow.fake_provider.config import FakeProviderConfig, KeyState
from quotaflow.fake_provider.faults import FaultQueue
from quotaflow.fake_provider.ids import IdMaker
from quotaflow.fake_provider.ratelimit import RateLimiter

KeyCheck = Literal["ok", "missing", "invalid"]


def loop_monotonic() -> float:
    """The running event loop's monotonic time (rate-limit windows use it)."""
    return asyncio.get_running_loop().time()


@dataclass(slots=True)
class Counter:
    """Requests seen (``errors`` of them failed) and tokens served."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class FakeProviderState:
    """Everything a running fake provider knows; see the module docstring."""

    def __init__(self, config: FakeProviderConfig) -> None:
        self.config = config
        self.faults = FaultQueue()
        self.limiter = RateLimiter()
        self.ids = IdMaker(config.seed)
        self.fingerprint = "fp_" + IdMaker(config.seed + 1).hex(10)
        # Epoch seconds for ``created`` fields and RFC 3339 resets; tests may pin it.
        self.wall_clock: Callable[[], float] = SystemClock().now
        self.monotonic: Callable[[], float] = loop_monotonic
        self.closing = asyncio.Event()
        self.total = Counter()
        self.by_key: dict[str, Counter] = {}
        self.by_model: dict[str, Counter] = {}

    # -- keys -------------------------------------------------------------------------

    def check_key(self, key: str | None) -> KeyCheck:
        """Whether ``key`` may call the API at all."""
        if not key:
            return "missing"
        keys = self.config.keys
        if keys is None:
            return "ok"
        known = keys.get(key)
        return "invalid" if known is None or known.invalid else "ok"

    def is_exhausted(self, key: str) -> bool:
        """True when ``key`` is known and its lifetime quota is used up."""
        keys = self.config.keys
        known = keys.get(key) if keys is not None else None
        return known is not None and known.is_exhausted()

    def set_key(self, key: str, quota_tokens: int | None, invalid: bool) -> KeyState:
        """Add or update a key; the server then accepts known keys only."""
        if self.config.keys is None:
            self.config.keys = {}
        state = self.config.keys.setdefault(key, KeyState())
        state.quota_tokens = quota_tokens
        state.invalid = invalid
        return state

    # -- accounting -------------------------------------------------------------------

    def _counters(self, key: str | None, model: str | None) -> list[Counter]:
        counters = [self.total]
        if key:
            counters.append(self.by_key.setdefault(key, Counter()))
            keys = self.config.keys
            known = keys.get(key) if keys is not None else None
            if known is not None:
                known.requests += 1
        if model:
            counters.append(self.by_model.setdefault(model, Counter()))
        return counters

    def record_error(self, key: str | None, model: str | None) -> None:
        """Count a request that failed (any error response or injected fault)."""
        for c in self._counters(key, model):
            c.requests += 1
            c.errors += 1

    def record_success(self, key: str, model: str, prompt: int, completion: int) -> None:
        """Count a served request and charge its tokens to the key's quota and window."""
        for c in self._counters(key, model):
            c.requests += 1
            c.prompt_tokens += prompt
            c.completion_tokens += completion
        keys = self.config.keys
        known = keys.get(key) if keys is not None else None
        if known is not None:
            known.used_tokens += prompt + completion
        self.limiter.charge(key, self.monotonic(), prompt, completion)

    def reset(self) -> None:
        """Forget stats, faults, windows and key usage (the keys themselves stay)."""
        self.faults.clear()
        self.limiter.clear()
        self.total = Counter()
        self.by_key.clear()
        self.by_model.clear()
        for ks in (self.config.keys or {}).values():
            ks.used_tokens = 0
            ks.requests = 0

    def stats_json(self) -> dict[str, Any]:
        """The body of ``GET /_fake/stats``."""
        keys = self.config.keys or {}
        by_key: dict[str, Any] = {}
        for name in sorted(set(self.by_key) | set(keys)):
            c = self.by_key.get(name, Counter())
            known = keys.get(name)
            by_key[name] = {
                **asdict(c),
                "used_tokens": known.used_tokens
                if known
                else c.prompt_tokens + c.completion_tokens,
                "quota_tokens": known.quota_tokens if known else None,
                "invalid": known.invalid if known else False,
            }
        return {
            **asdict(self.total),
            "by_key": by_key,
            "by_model": {m: asdict(c) for m, c in sorted(self.by_model.items())},
            "faults": [f.to_json() for f in self.faults.faults],
        }
