"""The application factory: no import-time globals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from quotaflow.gateway import Gateway
from quotaflow.management import Management
from quotaflow.web.auth import THROTTLE, AdminThrottle
from quotaflow.web.guards import guard_middleware
from quotaflow.web.response_headers import secure_headers
from quotaflow.web.routes import add_routes
from quotaflow.web.state import GATEWAY, MANAGEMENT


def create_app(
    gateway: Gateway, *, manage_lifecycle: bool = True, management: Management | None = None
) -> web.Application:
    """An aiohttp app serving ``gateway``; it starts and closes the gateway with the app
    unless ``manage_lifecycle`` is False (the caller already started it).

    ``management`` carries the admin token, master key and mode (``quotaflow serve`` builds
    it from the data folder); without one, an ephemeral one is made (fresh admin token,
    secrets added at runtime kept only in this process)."""
    mg = management or Management.build(gateway, None)
    app = web.Application(
        middlewares=[guard_middleware],
        client_max_size=gateway.config.server.max_body_bytes + 1024,
    )
    app[GATEWAY] = gateway
    app[MANAGEMENT] = mg
    app[THROTTLE] = AdminThrottle()
    app.on_response_prepare.append(secure_headers)
    add_routes(app)
    if manage_lifecycle:

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await gateway.start()
            yield
            await gateway.close()

        app.cleanup_ctx.append(lifecycle)

    async def management_lifecycle(_: web.Application) -> AsyncIterator[None]:
        await mg.start()  # after the gateway: it restores keys and agents into it
        yield
        await mg.close()

    app.cleanup_ctx.append(management_lifecycle)
    return app
