"""A webhook receiver for end-to-end tests: a small aiohttp server on the test's event loop
that records every POST (and answers 204), and an async wait that keeps that loop serving."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Hook:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@asynccontextmanager
async def webhook_receiver(port: int = 0) -> AsyncIterator[Hook]:
    """Listening on 127.0.0.1:``port`` (0: a free one) until the block ends."""
    hook = Hook("")

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        hook.raw.append(raw)
        hook.bodies.append(json.loads(raw))
        hook.headers.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield hook
    finally:
        await runner.cleanup()


async def until(predicate: Callable[[], bool], within_s: float = 10.0) -> bool:
    """Poll ``predicate`` while the event loop goes on serving."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()
