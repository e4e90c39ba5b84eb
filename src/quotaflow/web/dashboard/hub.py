"""``GET /api/events``: the dashboard's snapshot, pushed as Server-Sent Events when it changes.

One :class:`Hub` per app builds snapshots for every viewer. It watches a cheap fingerprint
(the gateway's change counter, the forced provider, the newest ledger row and alert) four
times a second; when it moved, the snapshot is rebuilt (at most every :data:`MIN_INTERVAL_S` for the
stream), and also every :data:`REFRESH_S` anyway, since windows reset and cooldowns end
with time alone. A rebuilt snapshot whose content differs gets the next ``version``; each
stream sends every new version (``event: snapshot``, ``id: <version>``) and a comment line
every :data:`PING_S` so proxies keep the connection open. ``instance`` changes when the
server restarts: a client that reconnects then takes the first snapshot as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from quotaflow.runtime import Runtime
from quotaflow.storage.base import LedgerQuery
from quotaflow.web.auth import viewer_of
from quotaflow.web.state import RUNTIME

if TYPE_CHECKING:  # the dashboard's modules load with its first request
    from quotaflow.web.dashboard.series import SeriesCache

# Imported by the first snapshot, not before (``quotaflow serve`` imports them on a thread
# once it listens: cli.serve.import_handlers)
DEFERRED_MODULES = ("quotaflow.web.dashboard.series", "quotaflow.web.dashboard.snapshot")
POLL_S = 0.25
MIN_INTERVAL_S = 1.0
REFRESH_S = 5.0
PING_S = 15.0
RETRY_MS = 1000


class Hub:
    """The latest dashboard snapshot, shared by every viewer (see the module docstring)."""

    def __init__(self, mg: Runtime) -> None:
        self.mg = mg
        self._series: SeriesCache | None = None
        self.instance = os.urandom(6).hex()
        self.version = 0
        self.closing = asyncio.Event()
        self._lock = asyncio.Lock()
        self._snap: dict[str, Any] | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._digest: bytes | None = None
        self._built_at = -math.inf
        self._fp_at = -math.inf

    @property
    def series(self) -> SeriesCache:
        """The dashboard's series cache, made (and the reports imported) on first use."""
        if self._series is None:
            from quotaflow.web.dashboard.series import SeriesCache

            self._series = SeriesCache(self.mg.gateway, self.mg.store)
        return self._series

    async def fingerprint(self) -> tuple[Any, ...]:
        """Something that moves whenever the snapshot may have (time aside)."""
        gw = self.mg.gateway
        newest = await gw.ledger.query(LedgerQuery(limit=1))
        alerts = await self.mg.alerts.recent(1)
        return (
            gw.changes,
            gw.forced_provider,
            tuple(gw.keys),
            (newest[0].id, newest[0].status) if newest else None,
            alerts[0].id if alerts else None,
            len(self.mg.holds),
            tuple(k for k, h in gw.health.items() if h.disabled_reason),
        )

    async def current(self, min_interval_s: float = 0.0) -> dict[str, Any]:
        """The snapshot, rebuilt when the fingerprint moved (no more often than
        ``min_interval_s``) or when it is :data:`REFRESH_S` old.

        Streams (``min_interval_s > 0``) share one fingerprint per half poll; a direct
        request (after an action) always looks afresh."""
        async with self._lock:
            mono = self.mg.gateway.clock.monotonic()
            age = mono - self._built_at
            if self._snap is not None and age < min_interval_s:
                return self._snap
            fp = self._fingerprint
            if min_interval_s <= 0 or mono - self._fp_at >= POLL_S / 2:
                fp = await self.fingerprint()
                self._fp_at = mono
            if self._snap is not None and age < REFRESH_S and fp == self._fingerprint:
                return self._snap
            from quotaflow.web.dashboard.snapshot import build_snapshot

            snap = await build_snapshot(self.mg, self.series, fp)
            self._fingerprint = fp
            self._built_at = mono
            digest = orjson.dumps(_stable(snap), option=orjson.OPT_SORT_KEYS)
            if digest != self._digest:
                self._digest = digest
                self.version += 1
            self._snap = {"instance": self.instance, "version": self.version, **snap}
            return self._snap

    async def close(self) -> None:
        self.closing.set()


def _stable(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without what changes on every build (its time, the uptime)."""
    system = {k: v for k, v in snap["system"].items() if k != "uptime_s"}
    return {**snap, "generated_at": None, "system": system}


HUB: web.AppKey[Hub] = web.AppKey("dashboard_hub", Hub)


def install(app: web.Application) -> None:
    """Give the app its hub; on shutdown the hub ends every stream (so none holds it open)."""
    hub = Hub(app[RUNTIME])
    app[HUB] = hub

    async def on_shutdown(_: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(on_shutdown)


def _event(snap: dict[str, Any], viewer: dict[str, Any]) -> bytes:
    data = orjson.dumps({"viewer": viewer, **snap})
    return b"event: snapshot\nid: %d\ndata: %s\n\n" % (snap["version"], data)


async def stream(request: web.Request) -> web.StreamResponse:
    """The snapshot as an SSE stream: each new version, at most every second."""
    viewer = viewer_of(request)
    hub = request.app[HUB]
    clock = hub.mg.gateway.clock
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    sent: int | None = None
    last_write = clock.monotonic()
    with contextlib.suppress(ConnectionError):
        await resp.write(b"retry: %d\n\n" % RETRY_MS)
        while not hub.closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            snap = await hub.current(MIN_INTERVAL_S)
            if snap["version"] != sent:
                await resp.write(_event(snap, viewer))
                sent = snap["version"]
                last_write = clock.monotonic()
            elif clock.monotonic() - last_write >= PING_S:
                await resp.write(b": ping\n\n")
                last_write = clock.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.closing.wait(), POLL_S)
    return resp
