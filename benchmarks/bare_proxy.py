"""The yardstick: a bare pass-through proxy on aiohttp (server and client) and orjson.

It parses the request JSON, picks one of two keys, forwards with keep-alive, parses the
answer's ``usage`` and returns it — no quotas, no ledger, no fallback. The issue's targets
were set against one of these (~3,500 req/s on the reference 2-core machine), so
``benchmarks/load.py`` runs it beside quotaflow: the ratio between the two travels from
machine to machine better than absolute numbers do.

Run: ``python benchmarks/bare_proxy.py UPSTREAM_BASE_URL PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys

import aiohttp
import orjson
from aiohttp import web

KEYS = itertools.cycle(["sk-bench-1", "sk-bench-2"])
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def chat(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    headers = {"Authorization": f"Bearer {next(KEYS)}", "Content-Type": "application/json"}
    upstream = request.app["upstream"] + "/v1/chat/completions"
    async with request.app[SESSION].post(upstream, data=orjson.dumps(body), headers=headers) as r:
        data = await r.read()
        orjson.loads(data).get("usage")
        return web.Response(body=data, status=r.status, content_type="application/json")


async def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app["upstream"] = upstream.rstrip("/")

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def serve(upstream: str, port: int) -> None:
    runner = web.AppRunner(await make_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"bare proxy serving on http://127.0.0.1:{bound}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM/SIGINT
    finally:
        await runner.cleanup()


def main() -> None:
    import uvloop

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    main()
