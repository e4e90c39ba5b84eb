"""The application factory: no import-time globals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from quotaflow.gateway import Gateway
from quotaflow.runtime import Runtime
from quotaflow.web.auth import THROTTLE, AdminThrottle
from quotaflow.web.guards import guard_middleware
from quotaflow.web.response_headers import secure_headers
from quotaflow.web.routes import add_routes
from quotaflow.web.state import GATEWAY, RUNTIME


def create_app(
    gateway: Gateway, *, manage_lifecycle: bool = True, runtime: Runtime | None = None
) -> web.Application:
    """An aiohttp app serving ``gateway``; it starts and closes the gateway with the app
    unless ``manage_lifecycle`` is False (the caller already started it).

    ``runtime`` carries the admin token, master key and mode (``quotaflow serve`` builds
    it from the data folder); without one, an ephemeral one is made (fresh admin token,
    secrets added at runtime kept only in this process)."""
    mg = runtime or Runtime.build(gateway, None)
    app = web.Application(
        middlewares=[guard_middleware],
        client_max_size=gateway.config.server.max_body_bytes + 1024,
    )
    app[GATEWAY] = gateway
    app[RUNTIME] = mg
    app[THROTTLE] = AdminThrottle()
    app.on_response_prepare.append(secure_headers)
    add_routes(app)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await mg.start(gateway=manage_lifecycle)  # storage → gateway → services
        yield
        await mg.close(gateway=manage_lifecycle)

    app.cleanup_ctx.append(lifecycle)
    return app
