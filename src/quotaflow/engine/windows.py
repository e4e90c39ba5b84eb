"""Limit windows and when they reset.

Calendar windows (``minute``, ``hour``, ``day``, ``month``) reset at the start of the next
calendar unit in the configured time zone, so a daily quota resets at local midnight, a
month ends on its real last day (28, 29, 30 or 31) and a day across a DST change is 23 or
25 hours long. ``once`` never resets. ``rolling`` counts what happened in the last N seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

WindowKind = Literal["minute", "hour", "day", "month", "once", "rolling"]

_ALIASES: dict[str, WindowKind] = {
    "minute": "minute",
    "min": "minute",
    "hour": "hour",
    "hourly": "hour",
    "day": "day",
    "daily": "day",
    "month": "month",
    "monthly": "month",
    "once": "once",
    "lifetime": "once",
}
_ROLLING = re.compile(r"^rolling[\s:_-]*(\d+(?:\.\d+)?)\s*(s|m|h|d)?$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Window:
    kind: WindowKind
    seconds: float = 0.0  # only for rolling

    def __str__(self) -> str:
        if self.kind == "rolling":
            # 15 significant digits: the text parses back to the same window (it is part of
            # a limit's id), where ":g" would print 1234567 s as "1.23457e+06".
            return f"rolling {self.seconds:.15g}s"
        return self.kind

    @property
    def is_rate(self) -> bool:
        """A short window that models a provider's rate limit rather than a quota."""
        if self.kind == "rolling":
            return self.seconds <= 3600
        return self.kind in ("minute", "hour")


def parse_window(text: str) -> Window:
    """``"day"``, ``"monthly"``, ``"once"``, ``"rolling 90s"``, ``"rolling:5m"`` → :class:`Window`.

    Raises ``ValueError`` with the accepted forms when ``text`` is none of them.
    """
    t = text.strip().lower()
    if t in _ALIASES:
        return Window(_ALIASES[t])
    m = _ROLLING.match(t)
    if m:
        seconds = float(m.group(1)) * _UNIT_S[m.group(2) or "s"]
        if seconds <= 0:
            raise ValueError("a rolling window needs a positive length")
        return Window("rolling", seconds)
    raise ValueError(
        f"unknown window {text!r}: use minute, hour, day, month, once or 'rolling N s' (e.g. 'rolling 90s')"
    )


def window_start(now: float, window: Window, tz: ZoneInfo) -> float:
    """Epoch seconds at which the window containing ``now`` began (``-inf`` for ``once``).

    For ``rolling`` this is ``now - seconds``: the left edge of the sliding window.
    """
    kind = window.kind
    if kind == "once":
        return float("-inf")
    if kind == "rolling":
        return now - window.seconds
    if kind == "minute":
        return now - (now % 60.0)
    local = datetime.fromtimestamp(now, tz)
    if kind == "hour":
        return local.replace(minute=0, second=0, microsecond=0).timestamp()
    if kind == "day":
        return _local_midnight(local.year, local.month, local.day, tz)
    return _local_midnight(local.year, local.month, 1, tz)


def next_reset(now: float, window: Window, tz: ZoneInfo) -> float | None:
    """Epoch seconds at which the window containing ``now`` ends; ``None`` for ``once``.

    For ``rolling`` windows nothing resets at once; callers ask :func:`rolling_frees_at`.
    """
    kind = window.kind
    if kind == "once":
        return None
    if kind == "rolling":
        return now + window.seconds
    if kind == "minute":
        return now - (now % 60.0) + 60.0
    if kind == "hour":
        return window_start(now, window, tz) + 3600.0
    local = datetime.fromtimestamp(now, tz)
    if kind == "day":
        nxt = local.date() + timedelta(days=1)
        return _local_midnight(nxt.year, nxt.month, nxt.day, tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return _local_midnight(year, month, 1, tz)


def _local_midnight(year: int, month: int, day: int, tz: ZoneInfo) -> float:
    # A zone that springs forward at midnight has no 00:00 that day; fold=0 maps the
    # missing wall time onto the first real instant after the gap.
    return datetime(year, month, day, tzinfo=tz).timestamp()
