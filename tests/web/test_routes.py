"""The route table: handlers other than ``/v1`` and ``/api/health`` are imported on their
first request, and each of them names a real handler."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from quotaflow.runtime import Runtime, build_gateway
from quotaflow.testing import config
from quotaflow.web.app import create_app
from quotaflow.web.routes import LAZY_TARGETS


def test_every_lazily_imported_handler_exists_and_is_a_coroutine_function(
    tmp_path: Path,
) -> None:
    create_app(build_gateway(config({}), tmp_path), manage_lifecycle=False)
    assert len(LAZY_TARGETS) >= 30  # add_routes named them all
    for module, name in sorted(LAZY_TARGETS):
        handler = getattr(importlib.import_module(f"quotaflow.web.{module}"), name)
        assert inspect.iscoroutinefunction(handler), f"{module}.{name}"


async def test_a_lazily_imported_handler_serves_its_first_and_later_requests(
    tmp_path: Path,
) -> None:
    cfg = config({"providers": [{"name": "openai", "keys": [{"secret": "sk-routes-0001"}]}]})
    gw = build_gateway(cfg, tmp_path)
    server = TestServer(create_app(gw, runtime=Runtime.build(gw, tmp_path)))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.get(server.make_url("/openapi.json")) as r:
                    assert r.status == 200
                    spec = await r.json()
                assert "/api/health" in spec["paths"] and "/api/dashboard" in spec["paths"]
            async with http.get(server.make_url("/static/missing.js")) as r:
                assert r.status == 404  # the lazily imported handler's own error
    finally:
        await server.close()
