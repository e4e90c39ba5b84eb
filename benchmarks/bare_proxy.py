"""The yardstick: a bare pass-through proxy on aiohttp (server and client) and orjson.

It parses the request JSON, picks one of two keys, forwards with keep-alive, parses the
answer's ``usage`` and returns it — no quotas, no ledger, no fallback. The issue's targets
were set against one of these (~3,500 req/s on the reference 2-core machine), so
``benchmarks/load.py`` runs it beside quotaflow: the ratio between the two travels from
machine to machine better than absolute numbers do.

``--journal PATH`` makes it the *durable* floor: the least any proxy must do to keep
quotaflow's durability promise. Each request writes a pending row to a SQLite journal (WAL,
``synchronous=NORMAL``, as quotaflow's ledger) and waits for its commit before it goes
upstream, then settles the row with the answer's usage and waits for that commit before it
answers. Writes are group-committed (one transaction for everything queued in a turn of the
loop). One table, no index but the row id, no rollups, no routing: what is left between it
and quotaflow is quotaflow's own work.

Run: ``python benchmarks/bare_proxy.py UPSTREAM_BASE_URL PORT [--journal PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sqlite3
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

KEYS = itertools.cycle(["sk-bench-1", "sk-bench-2"])
SESSION = web.AppKey("session", aiohttp.ClientSession)

_BEGIN = "INSERT INTO journal (id, ts, key, model, status) VALUES (?, ?, ?, ?, 'pending')"
_SETTLE = (
    "UPDATE journal SET status=?, prompt_tokens=?, completion_tokens=?, total_tokens=? WHERE id=?"
)


class Journal:
    """One row per request, written before the upstream call and settled after it; a
    caller's ``await`` returns once the transaction holding its write committed."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, ts REAL NOT NULL, "
            "key TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL, "
            "prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER)"
        )
        (last,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()
        self.ids = itertools.count(int(last) + 1)
        self.begins: list[tuple[Any, ...]] = []
        self.settles: list[tuple[Any, ...]] = []
        self.waiting: list[asyncio.Future[None]] = []
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self.write_loop())

    def _submit(
        self, queue: list[tuple[Any, ...]], params: tuple[Any, ...]
    ) -> asyncio.Future[None]:
        fut = asyncio.get_running_loop().create_future()
        queue.append(params)
        self.waiting.append(fut)
        self.wake.set()
        return fut

    async def begin(self, key: str, model: str) -> int:
        row = next(self.ids)
        await self._submit(self.begins, (row, time.time(), key, model))
        return row

    async def settle(self, row: int, status: str, usage: dict[str, Any]) -> None:
        params = (
            status,
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            usage.get("total_tokens"),
            row,
        )
        await self._submit(self.settles, params)

    async def write_loop(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(0)  # let requests woken in the same turn join this batch
            self.wake.clear()
            begins, settles, waiting = self.begins, self.settles, self.waiting
            self.begins, self.settles, self.waiting = [], [], []
            error: Exception | None = None
            try:
                self.db.execute("BEGIN")
                if begins:
                    self.db.executemany(_BEGIN, begins)
                if settles:
                    self.db.executemany(_SETTLE, settles)
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                error = exc
            for fut in waiting:
                if not fut.done():
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.db.close()


JOURNAL = web.AppKey("journal", Journal)


async def chat(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    key = next(KEYS)
    journal = request.app.get(JOURNAL)
    row = await journal.begin(key, str(body.get("model"))) if journal else 0
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    upstream = request.app["upstream"] + "/v1/chat/completions"
    async with request.app[SESSION].post(upstream, data=orjson.dumps(body), headers=headers) as r:
        data = await r.read()
        usage = orjson.loads(data).get("usage") or {}
        if journal:
            await journal.settle(row, "ok" if r.status == 200 else "error", usage)
        return web.Response(body=data, status=r.status, content_type="application/json")


async def make_app(upstream: str, journal: str | None = None) -> web.Application:
    app = web.Application()
    app["upstream"] = upstream.rstrip("/")

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if journal:
            app[JOURNAL] = Journal(journal)
        yield
        await app[SESSION].close()
        if journal:
            await app[JOURNAL].close()

    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def serve(upstream: str, port: int, journal: str | None) -> None:
    runner = web.AppRunner(await make_app(upstream, journal), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"bare proxy serving on http://127.0.0.1:{bound}", flush=True)
    try:
        await stop.wait()  # until SIGTERM/SIGINT
    finally:
        await runner.cleanup()


def main() -> None:
    import uvloop

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream")
    ap.add_argument("port", type=int)
    ap.add_argument("--journal", metavar="PATH", help="the durable floor: journal each request")
    args = ap.parse_args()
    uvloop.run(serve(args.upstream, args.port, args.journal))


if __name__ == "__main__":
    main()
