"""``quotaflow serve``: the gateway's HTTP server."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click
from aiohttp import web

from quotaflow.config.load import load_config
from quotaflow.config.model import Config
from quotaflow.errors import ConfigError
from quotaflow.management import Management
from quotaflow.runtime import build_gateway, data_home
from quotaflow.web.app import create_app


def find_config(path: str | None) -> str | None:
    if path:
        return path
    return "quotaflow.yaml" if Path("quotaflow.yaml").is_file() else None


def load_or_exit(path: str | None) -> Config:
    try:
        return load_config(find_config(path))
    except ConfigError as exc:
        click.echo(f"quotaflow: {exc.message}", err=True)
        sys.exit(2)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on some platforms
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def run_server(
    config: Config, home: Path, host: str, port: int, *, quiet: bool = False,
    trust_local: bool = False,
) -> None:  # fmt: skip
    gateway = build_gateway(config, home)
    try:
        mg = Management.build(
            gateway, home, bind_host=host, trust_local=trust_local or config.server.trust_local
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    app = create_app(gateway, management=mg)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = sockets[0].getsockname()[1] if sockets else port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if mg.new_admin_token is not None:  # printed once: only its hash is stored
        kept = "the shared PostgreSQL store" if mg.shared else home
        click.echo(
            f"admin token (shown once; only its hash is kept in {kept}): {mg.new_admin_token}"
        )
    if mg.trust_local and not quiet:
        click.echo("trust-local mode: /api needs no token from this machine (loopback only)")
    if not quiet:
        if gateway.crashed_on_start:
            click.echo(f"settled {gateway.crashed_on_start} attempt(s) left pending by a crash")
        keys = len(gateway.keys)
        click.echo(
            f"quotaflow serving on http://{host}:{actual}  "
            f"({len(config.providers)} providers, {keys} keys; config: {config.source}; data: {home})",
        )
        click.echo(
            f"dashboard: http://{host}:{actual}/   OpenAI base URL: http://{host}:{actual}/v1"
        )
    sys.stdout.flush()
    await stop.wait()
    await runner.cleanup()


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
    "--trust-local",
    is_flag=True,
    default=False,
    help="Seed 000's local mode: /api needs no admin token. Refused unless bound to loopback.",
)
def serve(
    config_path: str | None, host: str | None, port: int | None, home: str | None,
    trust_local: bool,
) -> None:  # fmt: skip
    """Run the gateway: /v1 (OpenAI-compatible), /api (management)."""
    config = load_or_exit(config_path)
    install_uvloop()
    asyncio.run(
        run_server(
            config,
            data_home(home),
            host or config.server.host,
            config.server.port if port is None else port,
            trust_local=trust_local,
        )
    )
