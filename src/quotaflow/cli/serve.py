"""``quotaflow serve``: the gateway's HTTP server.

The server's modules are imported when the command runs (``quotaflow --help`` lists this
command without loading them), the configuration first: a bad file fails fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from quotaflow.config.model import Config
    from quotaflow.engine.pricing import Price
    from quotaflow.gateway import Gateway


def find_config(path: str | None) -> str | None:
    if path:
        return path
    return "quotaflow.yaml" if Path("quotaflow.yaml").is_file() else None


def load_or_exit(path: str | None) -> Config:
    from quotaflow.config.load import load_config
    from quotaflow.errors import ConfigError

    try:
        return load_config(find_config(path))
    except ConfigError as exc:
        click.echo(f"quotaflow: {exc.message}", err=True)
        sys.exit(2)


class StartRefused(click.ClickException):
    """The data folder cannot be served from: one line naming the file, exit 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"quotaflow: {self.message}", err=True)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on some platforms
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# Young objects allowed to pile up before a collection. Python's default (700) is less than
# what a few requests in flight hold at once, so it collected every few dozen requests, a
# pause inside some request each time; past this many only garbage that really piles up is
# looked for (requests free what they allocate by reference counting).
GC_YOUNG = 10_000
GC_MIDDLE = 50  # young collections between two of the middle generation (default 10)


def settle_gc() -> None:
    """End :func:`serve`'s start-up without garbage collection: what start-up built (modules,
    configuration, engine) lives as long as the process, so it is frozen out of every later
    collection, and collections resume for what requests allocate, less often."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, GC_MIDDLE, gc.get_threshold()[2])
    gc.enable()


async def run_server(
    config: Config,
    home: Path,
    host: str,
    port: int,
    *,
    quiet: bool = False,
    trust_local: bool = False,
    on_listening: Callable[[], None] | None = None,
    admin_token_file: Path | None = None,
) -> None:
    import os

    from aiohttp import web

    from quotaflow.engine.words import plural
    from quotaflow.errors import StorageUnusable
    from quotaflow.runtime import Runtime, build_gateway
    from quotaflow.services.access import chosen_admin_token
    from quotaflow.storage.folder_lock import lock_data_folder
    from quotaflow.web.app import create_app
    from quotaflow.web.connections import quiet_protocol_errors, runner_options
    from quotaflow.web.shutdown import HANDLER_GRACE_S, drain

    try:
        folder_lock = lock_data_folder(home)  # held until the process ends
    except StorageUnusable as exc:
        raise StartRefused(exc.message) from None
    gateway = build_gateway(config, home)
    try:
        chosen = chosen_admin_token(os.environ, admin_token_file)
        mg = Runtime.build(
            gateway, home, bind_host=host, trust_local=trust_local or config.server.trust_local,
            admin_token=chosen,
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    app = create_app(gateway, runtime=mg)
    quiet_protocol_errors()
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=HANDLER_GRACE_S,
        **runner_options(config),
    )
    try:
        await runner.setup()
    except StorageUnusable as exc:
        raise StartRefused(exc.message) from None
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        hint = "; choose another with --port (0 picks a free one)" if port else ""
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}"
        ) from None
    if on_listening is not None:
        on_listening()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = sockets[0].getsockname()[1] if sockets else port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if mg.new_admin_token is not None:  # left in a private file, never in the log
        from quotaflow.services.access import leave_token

        path = leave_token(home, mg.new_admin_token)
        click.echo(
            f"admin token created: read it from {path} (readable by you only), or choose "
            "one with QUOTAFLOW_ADMIN_TOKEN / --admin-token-file, or replace it with "
            "'quotaflow admin-token rotate'"
        )
    if mg.trust_local and not quiet:
        click.echo("trust-local mode: /api needs no token from this machine (loopback only)")
    if not quiet:
        if gateway.crashed_on_start:
            click.echo(f"settled {gateway.crashed_on_start} attempt(s) left pending by a crash")
        keys = len(gateway.keys)
        click.echo(
            f"quotaflow serving on http://{host}:{actual}  "
            f"({plural(len(config.providers), 'provider')}, {plural(keys, 'key')}; config: {config.source}; data: {home})",
        )
        click.echo(
            f"dashboard: http://{host}:{actual}/   OpenAI base URL: http://{host}:{actual}/v1"
        )
        echo_key_lines(gateway)
    sys.stdout.flush()
    warm_prices(gateway, quiet)
    await stop.wait()

    def say(line: str) -> None:
        if not quiet:
            click.echo(line)
            sys.stdout.flush()

    await drain(site, gateway, config.settings.shutdown_grace_s, say)
    await runner.cleanup()
    folder_lock.release()


NO_KEYS = (
    "no provider key found: set one in the environment or in a .env file here "
    "(OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, GROQ_API_KEY, …), or pass "
    "--config quotaflow.yaml; a running server also takes keys from `quotaflow keys add` "
    "and the dashboard"
)


def warm_prices(gateway: Gateway, quiet: bool) -> None:
    """Read the catalog's prices in a background thread (the price table is imported there,
    off the start path), then warn once per catalog model with no known price."""
    from quotaflow.config.prices import stand_in_note, warm_in_background

    policy = gateway.config.settings.unpriced

    def warn(unpriced: list[tuple[str, str, Price]]) -> None:
        for provider, model, price in unpriced:
            how = stand_in_note(price, policy)
            gateway.observer.unpriced(provider, model, how)
            if not quiet:
                click.echo(f"warning: no known price for {provider}/{model}: {how}")
        sys.stdout.flush()
        import_handlers()

    warm_in_background(list(gateway.config.providers.values()), warn)


def import_handlers() -> None:
    """Import the handlers that import themselves when they first serve, and what the
    dashboard's first snapshot loads (its series, the reports and forecasts behind them):
    run on :func:`warm_prices`' thread, so the first requests import nothing on the event
    loop (the first dashboard load held it 40-90 ms with the reports' import)."""
    from quotaflow.web.dashboard.hub import DEFERRED_MODULES
    from quotaflow.web.routes import LAZY_TARGETS

    for module in [*(f"quotaflow.web.{m}" for m, _ in sorted(LAZY_TARGETS)), *DEFERRED_MODULES]:
        with contextlib.suppress(Exception):
            import_module(module)


def echo_key_lines(gateway: Gateway) -> None:
    """What the gateway will enforce, one line per key (its label, never the secret), the
    configuration's hints, or how to add a key when there is none."""
    from quotaflow.config.describe import key_line

    for key in gateway.keys.values():
        provider = gateway.config.providers.get(key.provider)
        click.echo("  " + key_line(key, provider.limits if provider else ()))
    for note in gateway.config.notes:
        click.echo(f"hint: {note}")
    if not gateway.keys:
        click.echo(NO_KEYS)


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML config (default: ./quotaflow.yaml if present, else keys from the environment).",
)
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 5050; 0 picks a free one).")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Data folder (default $QUOTAFLOW_HOME or ./.quotaflow).",
)
@click.option(
    "--admin-token-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="File holding the admin token (qfadm-…) to use; QUOTAFLOW_ADMIN_TOKEN wins over it.",
)
@click.option(
    "--trust-local",
    is_flag=True,
    default=False,
    help="Local mode: /api needs no admin token. Refused unless bound to loopback.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    metavar="LEVEL",
    default=None,
    help="debug, info (one access line per request), warning or error (default $QUOTAFLOW_LOG_LEVEL, else info).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    metavar="FORMAT",
    default=None,
    help="text (key=value) or json, one object a line (default $QUOTAFLOW_LOG_FORMAT, else text).",
)
def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    home: str | None,
    admin_token_file: str | None,
    trust_local: bool,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run the gateway: /v1 (OpenAI-compatible), /api (management).

    Also /metrics (Prometheus) and, with the otel extra and OTEL_* variables, traces."""
    from quotaflow.observability.logs import configure_logging

    try:
        configure_logging(log_level, log_format)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    # Start-up imports and builds much and frees little: the cyclic garbage collector,
    # which would rescan it all again and again, waits until the server listens.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from quotaflow.runtime import data_home

        config = load_or_exit(config_path)
        install_uvloop()
        asyncio.run(
            run_server(
                config,
                data_home(home),
                host or config.server.host,
                config.server.port if port is None else port,
                trust_local=trust_local,
                on_listening=settle_gc if collecting else None,
                admin_token_file=Path(admin_token_file) if admin_token_file else None,
            )
        )
    finally:  # also when start-up failed
        if collecting:
            gc.enable()
