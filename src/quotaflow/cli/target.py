"""Where a command works: a running server (``--url``, through :mod:`quotaflow.client`) or
the local data folder (``--home``, through the runtime).

A command works on a running server when given ``--url`` (or ``$QUOTAFLOW_URL``), with the
admin token from ``--token``, ``$QUOTAFLOW_ADMIN_TOKEN`` or ``--token-file``; otherwise it
works directly on the data folder (``--home``, ``$QUOTAFLOW_HOME``, ``./.quotaflow``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from quotaflow.cli.exit_codes import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE
from quotaflow.cli.render import fail
from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.errors import ConfigError, QuotaflowError, StorageUnusable

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

URL_ENV = "QUOTAFLOW_URL"
TOKEN_ENV = "QUOTAFLOW_ADMIN_TOKEN"


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
    reads: str | None = None,
    or_url: bool = False,
) -> T:
    """Run ``work(runtime)`` on the local data folder and the storage ``config.storage``
    names (no server needed): the :class:`~quotaflow.runtime.Runtime` ``serve`` starts,
    without a server's services.

    ``reads``: the command only reads (its name, for the message): with the embedded ledger
    it refuses a data folder without one instead of creating an empty folder and ledger
    (``or_url``: the command can ask a running server instead, and the message says so)."""
    from quotaflow.runtime import data_home, open_runtime

    if reads is not None:
        require_ledger(config, data_home(home), reads, or_url=or_url)

    async def main() -> T:
        async with open_runtime(config, data_home(home), clock=clock) as runtime:
            return await work(runtime)

    try:
        return asyncio.run(main())
    except QuotaflowError as exc:
        fail(exc.message, exit_code(exc))


def exit_code(exc: QuotaflowError) -> int:
    """2 for a refused request and for a data folder refused at start (as ``serve`` refuses
    it: a damaged ledger, a master key that opens no stored secret), else 1."""
    if exc.status in (400, 404) or isinstance(exc, StorageUnusable):
        return EXIT_USAGE
    return EXIT_FAILED


LEDGER_FILE = "quotaflow.db"  # the embedded (SQLite) ledger, in the data folder


def require_ledger(config: Config, home: Path, command: str, *, or_url: bool = False) -> None:
    """Exit 2, saying where it looked, when the data folder holds no embedded ledger (a
    ledger in PostgreSQL is not in the folder: nothing to check)."""
    from quotaflow.storage import backend_name

    if backend_name(config.storage.ledger) != "sqlite" or (home / LEDGER_FILE).is_file():
        return
    where = home.resolve()
    found = f"no data folder at {where}" if not home.exists() else f"no ledger in {where}"
    hint = "pass --home (or set $QUOTAFLOW_HOME) to the folder 'quotaflow serve' uses"
    url = os.environ.get(URL_ENV)
    if or_url:
        hint += ", or ask the running server with --url (or $QUOTAFLOW_URL)"
    elif url:
        hint += f" ({command} does not use the server at ${URL_ENV}, {url})"
    fail(f"{found}: quotaflow {command} reads the ledger there; {hint}", EXIT_USAGE)


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
        from quotaflow.client import Client, ClientError  # only commands on a server need it

        try:
            status, data = Client(self.url, token=self.token).request(method, path, body)
        except ClientError as exc:
            fail(f"cannot reach the server at {self.url}{path}: {exc}", EXIT_UNREACHABLE)
        if isinstance(data, str):  # not JSON
            data = {"success": False, "message": data}
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


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command works: the server named by ``--url``, else the data folder."""

    server: Server | None
    config_path: str | None
    home: str | None

    @staticmethod
    def of(
        config_path: str | None,
        home: str | None,
        url: str | None,
        token: str | None,
        token_file: str | None,
    ) -> Target:
        return Target(Server.of(url, token, token_file), config_path, home)

    def run(
        self,
        work: Callable[[Any], Awaitable[T]],
        method: str,
        path: str,
        body: Any = None,
    ) -> Any:
        """``method path`` (with ``body``) on the server, else ``work(runtime)`` on the data
        folder; both give the same document."""
        if self.server is not None:
            return self.server.call(method, path, body)
        return run_local(load_config_or_exit(self.config_path), self.home, work)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
