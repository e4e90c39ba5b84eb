"""quotaflow's web app served in this process (aiohttp's TestServer), and a client of it that
signs in with the admin token the runtime created (or the one it was given)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.test_utils import TestServer

from quotaflow.config.model import Config
from quotaflow.runtime import Runtime, build_gateway
from quotaflow.web.app import create_app

C = TypeVar("C", bound="AppClient")


class AppClient:
    """Calls to the served app; ``token="admin"`` (the default) signs in as the operator,
    another string as that bearer, ``None`` as nobody."""

    def __init__(
        self, server: TestServer, http: aiohttp.ClientSession, token: str, mg: Runtime
    ) -> None:
        self.server, self.http, self.token, self.mg = server, http, token, mg

    def headers(self, token: str | None = "admin") -> dict[str, str]:
        t = self.token if token == "admin" else token
        return {"authorization": f"Bearer {t}"} if t else {}

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = "admin"
    ) -> tuple[int, Any]:
        """``body=None``: no body and no content type (``curl -X POST``)."""
        async with self.http.request(
            method,
            self.server.make_url(path),
            json=body,
            headers=self.headers(token),
            skip_auto_headers=["content-type"] if body is None else (),
        ) as r:
            return r.status, await r.json()


@asynccontextmanager
async def served_app(
    cfg: Config, home: Path, client: type[C], *, admin_token: str | None = None
) -> AsyncIterator[C]:
    """The app of a gateway on ``cfg`` with its data in ``home``, and a ``client`` of it."""
    gw = build_gateway(cfg, home)
    mg = Runtime.build(gw, home, admin_token=admin_token)
    server = TestServer(create_app(gw, runtime=mg), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            token = admin_token or mg.new_admin_token
            assert token is not None
            yield client(server, http, token, mg)
    finally:
        await server.close()
