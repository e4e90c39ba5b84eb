"""What every read/write command shares in its output: JSON vs rich tables, times, failing.

Exit codes (documented in ``quotaflow --help``):

    0  success
    1  operational failure: the command ran and found a problem (a failed key test, a
       forecast blackout, a refused server request, …)
    2  usage or configuration error (bad option, invalid config, unknown key)
    3  the server at --url cannot be reached
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import click

from quotaflow.cli.exit_codes import EXIT_CODES_HELP as EXIT_CODES_HELP
from quotaflow.cli.exit_codes import EXIT_FAILED as EXIT_FAILED
from quotaflow.cli.exit_codes import EXIT_OK as EXIT_OK
from quotaflow.cli.exit_codes import EXIT_UNREACHABLE as EXIT_UNREACHABLE
from quotaflow.cli.exit_codes import EXIT_USAGE as EXIT_USAGE
from quotaflow.clock import Clock, FrozenClock, SystemClock

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def console() -> Console:
    """Rich output on stdout (plain when not a terminal)."""
    from rich.console import Console  # only commands that print tables pay for rich

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"quotaflow: {message}", err=True)
    sys.exit(code)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON (infinities as null) for scripts."""
    click.echo(json.dumps(_finite(data), indent=2, default=str))


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


# -- options ---------------------------------------------------------------------------
def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables."
    )(f)


# -- time ------------------------------------------------------------------------------
def parse_instant(text: str, now: float, tz: ZoneInfo, *, param: str) -> float:
    """``2026-03-01``, ``2026-03-01T12:00``, epoch seconds, or ``7d`` / ``24h`` / ``30m`` ago."""
    t = text.strip()
    m = _RELATIVE.match(t.lower())
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use a date (2026-03-01), a date-time (2026-03-01T12:00), epoch seconds or a span ago (7d, 24h, 30m)",
            param_hint=param,
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).timestamp()


def clock_at(now_text: str | None, tz: ZoneInfo) -> Clock:
    """The real clock, or one frozen at ``--now`` (for reproducible reports and forecasts)."""
    if now_text is None:
        return SystemClock()
    return FrozenClock(parse_instant(now_text, SystemClock().now(), tz, param="--now"))


def when(ts: float | None, tz: ZoneInfo) -> str:
    if ts is None or not math.isfinite(ts):
        return "never"
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")


def iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# -- local mode --------------------------------------------------------------------------
