"""Building and running the fake provider: :func:`create_app`, :func:`running_fake_provider`, :func:`serve`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from quotaflow.fake_provider.anthropic import AnthropicProtocol
from quotaflow.fake_provider.config import FakeProviderConfig
from quotaflow.fake_provider.control import make_control_routes
from quotaflow.fake_provider.count_tokens import count_tokens_route
from quotaflow.fake_provider.embeddings import embedding_routes
from quotaflow.fake_provider.gemini import GeminiProtocol
from quotaflow.fake_provider.openai import OpenAIProtocol
from quotaflow.fake_provider.pipeline import make_chat_handler
from quotaflow.fake_provider.protocol import WireProtocol
from quotaflow.fake_provider.state import FakeProviderState

STATE_KEY: web.AppKey[FakeProviderState] = web.AppKey("fake_provider_state", FakeProviderState)
PROTOCOLS: dict[str, Callable[[FakeProviderState], WireProtocol]] = {
    "openai": OpenAIProtocol,
    "anthropic": AnthropicProtocol,
    "gemini": GeminiProtocol,
}
# Seconds a stopping server waits for in-flight responses (slow streams) before closing them.
SHUTDOWN_TIMEOUT_S = 2.0


def create_app(config: FakeProviderConfig) -> web.Application:
    """An aiohttp app speaking ``config.protocol``, plus the ``/_fake/`` control API.

    The app keeps ``config`` itself (not a copy), so changes to it apply to the next request;
    ``app[STATE_KEY]`` is the live :class:`FakeProviderState`.
    """
    state = FakeProviderState(config)
    proto = PROTOCOLS[config.protocol](state)
    app = web.Application(client_max_size=32 << 20)  # real providers take multi-MB prompts
    app[STATE_KEY] = state
    app.router.add_routes(embedding_routes(state, proto))  # before the chat catch-all paths
    if config.protocol == "anthropic":
        app.router.add_routes([count_tokens_route(state, proto)])
    app.router.add_routes(proto.routes(make_chat_handler(state, proto)))
    app.router.add_routes(make_control_routes(state))

    async def release_hung_requests(app: web.Application) -> None:
        state.closing.set()

    app.on_shutdown.append(release_hung_requests)
    return app


@dataclass(frozen=True)
class FakeProviderHandle:
    """A fake provider running in this process: where it listens and its live state."""

    url: str
    base_url: str
    port: int
    state: FakeProviderState
    app: web.Application

    @property
    def config(self) -> FakeProviderConfig:
        """Shortcut for ``state.config``."""
        return self.state.config


def base_url_for(protocol: str, url: str) -> str:
    """The base URL a client of ``protocol`` is configured with (OpenAI's includes ``/v1``)."""
    return url + "/v1" if protocol == "openai" else url


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)


@asynccontextmanager
async def running_fake_provider(
    config: FakeProviderConfig | None = None, **overrides: Any
) -> AsyncIterator[FakeProviderHandle]:
    """Run a fake provider on 127.0.0.1 and a free port in the current event loop.

    ``overrides`` are :class:`FakeProviderConfig` fields, applied on top of ``config``::

        async with running_fake_provider(protocol="anthropic", latency_ms=20) as fake:
            client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="k")
    """
    if config is None:
        config = FakeProviderConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    app = create_app(config)
    runner, port = await _start(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        yield FakeProviderHandle(url, base_url_for(config.protocol, url), port, app[STATE_KEY], app)
    finally:
        await runner.cleanup()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _serve(config: FakeProviderConfig, host: str, port: int) -> None:
    app = create_app(config)
    runner, bound = await _start(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no add_signal_handler
            loop.add_signal_handler(sig, stop.set)
    print(f"fake-provider ({config.protocol}) listening on http://{host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(config: FakeProviderConfig, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGINT/SIGTERM (blocking), after printing the ``listening on`` line.

    ``port=0`` picks a free port; the printed line has the real one.
    """
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        runner.run(_serve(config, host, port))
    sys.stdout.flush()
