"""Time, injected: the only module of quotaflow that reads the wall clock.

Everything else receives a :class:`Clock` so the engine can be tested with a
:class:`FrozenClock` and no sleeps.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of time: ``now()`` in epoch seconds, ``monotonic()`` for durations."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FrozenClock:
    """A clock that only moves when told to; ``now`` and ``monotonic`` move together."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    def set(self, epoch_s: float) -> None:
        delta = epoch_s - self._now
        self._now = epoch_s
        self._mono += max(delta, 0.0)
