"""The application factory: no import-time globals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from quotaflow.gateway import Gateway
from quotaflow.web.errors import error_middleware
from quotaflow.web.keys import GATEWAY
from quotaflow.web.routes import add_routes


def create_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> web.Application:
    """An aiohttp app serving ``gateway``; it starts and closes the gateway with the app
    unless ``manage_lifecycle`` is False (the caller already started it)."""
    app = web.Application(
        middlewares=[error_middleware], client_max_size=gateway.config.server.max_body_bytes + 1024
    )
    app[GATEWAY] = gateway
    add_routes(app)
    if manage_lifecycle:

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await gateway.start()
            yield
            await gateway.close()

        app.cleanup_ctx.append(lifecycle)
    return app
