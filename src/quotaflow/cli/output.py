"""What every read/write command shares: options, exit codes, JSON vs rich output, server calls.

Exit codes (documented in ``quotaflow --help``):

    0  success
    1  operational failure: the command ran and found a problem (a failed key test, a
       forecast blackout, a refused server request, …)
    2  usage or configuration error (bad option, invalid config, unknown key)
    3  the server at --url cannot be reached

A command works on a running server when given ``--url`` (or ``$QUOTAFLOW_URL``), with the
admin token from ``--token``, ``$QUOTAFLOW_ADMIN_TOKEN`` or ``--token-file``; otherwise it
works directly on the data folder (``--home``, ``$QUOTAFLOW_HOME``, ``./.quotaflow``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import click

from quotaflow.cli.exit_codes import EXIT_CODES_HELP as EXIT_CODES_HELP
from quotaflow.cli.exit_codes import EXIT_FAILED as EXIT_FAILED
from quotaflow.cli.exit_codes import EXIT_OK as EXIT_OK
from quotaflow.cli.exit_codes import EXIT_UNREACHABLE as EXIT_UNREACHABLE
from quotaflow.cli.exit_codes import EXIT_USAGE as EXIT_USAGE
from quotaflow.clock import Clock, FrozenClock, SystemClock
from quotaflow.config.model import Config
from quotaflow.errors import ConfigError, QuotaflowError

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

URL_ENV = "QUOTAFLOW_URL"
TOKEN_ENV = "QUOTAFLOW_ADMIN_TOKEN"
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
def local_options(f: F) -> F:
    """``--config`` and ``--home``: where the local data folder and the config are."""
    f = click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Data folder (default $QUOTAFLOW_HOME or ./.quotaflow).",
    )(f)
    f = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML config (default $QUOTAFLOW_CONFIG, ./quotaflow.yaml, else the environment).",
    )(f)
    return f


def server_options(f: F) -> F:
    """``--url``, ``--token`` and ``--token-file``: talk to a running server instead."""
    f = click.option(
        "--token-file",
        type=click.Path(dir_okay=False, exists=True),
        default=None,
        help="File holding the admin token.",
    )(f)
    f = click.option(
        "--token",
        default=None,
        envvar=TOKEN_ENV,
        show_envvar=True,
        help="Admin token of the server.",
    )(f)
    f = click.option(
        "--url",
        default=None,
        envvar=URL_ENV,
        show_envvar=True,
        help="Use the server at this URL (e.g. http://127.0.0.1:5050) instead of the local data folder.",
    )(f)
    return f


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
def load_config_or_exit(config_path: str | None) -> Config:
    from quotaflow.runtime import resolve_config

    try:
        return resolve_config(config_path)
    except ConfigError as exc:
        fail(exc.message, EXIT_USAGE)


def run_local(
    config: Config,
    home: str | None,
    work: Callable[[Any], Awaitable[T]],
    *,
    clock: Clock | None = None,
    network: bool = False,
) -> T:
    """Run ``work(engine)`` on the local data folder (no server needed)."""
    from quotaflow.runtime import data_home, open_engine

    async def main() -> T:
        async with open_engine(config, data_home(home), clock=clock, network=network) as engine:
            return await work(engine)

    try:
        return asyncio.run(main())
    except QuotaflowError as exc:
        fail(exc.message, EXIT_USAGE if exc.status in (400, 404) else EXIT_FAILED)


# -- server mode -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Server:
    url: str
    token: str | None

    @staticmethod
    def of(url: str | None, token: str | None, token_file: str | None) -> Server | None:
        if not url:
            return None
        if token is None and token_file:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        return Server(url.rstrip("/"), token or None)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """JSON from the server; exits 3 when unreachable, 1 on a refused request."""
        status, data = request_json(self.url + path, method, body, self.token)
        if status == 404 and not (isinstance(data, dict) and "success" in data):
            fail(
                f"{self.url} has no {path} endpoint (is it a quotaflow server of this version?)",
                EXIT_FAILED,
            )
        if status >= 400 or (isinstance(data, dict) and data.get("success") is False):
            message = data.get("message") if isinstance(data, dict) else None
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                message = data["error"].get("message")
            code = EXIT_USAGE if status in (400, 401, 403, 404, 422) else EXIT_FAILED
            fail(f"{method} {path}: {message or f'HTTP {status}'}", code)
        return data


def request_json(
    url: str, method: str, body: Any, token: str | None, timeout_s: float = 30.0
) -> tuple[int, Any]:
    """``(status, parsed JSON)``; exits 3 when nothing answers at ``url``."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("accept", "application/json")
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, _parse(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _parse(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"cannot reach the server at {url}: {reason}", EXIT_UNREACHABLE)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return {"success": False, "message": raw[:200].decode("utf-8", "replace")}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
