"""A bounded shutdown: stop taking connections, let what is in flight finish for
``settings.shutdown_grace_s``, then end the streams still open with an SSE error event (each
billed for what it delivered) so that the process exits in bounded time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from quotaflow.gateway import Gateway

POLL_S = 0.05
STREAMS_END_S = 5.0  # interrupted streams write their error event and book within this
# What aiohttp still gives a handler after the drain (a plain request whose upstream has not
# answered yet) before it cancels it.
HANDLER_GRACE_S = 5.0
SHUTTING_DOWN = "the server is shutting down"


async def drain(
    site: web.BaseSite, gateway: Gateway, grace_s: float, say: Callable[[str], None]
) -> None:
    """Wait for the requests in flight, at most ``grace_s``; then interrupt open streams."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await site.stop()  # no new connections; those open keep being served
    if gateway.busy:
        say(f"draining {gateway.busy} request(s) in flight (up to {grace_s:g}s)")
    await _until_idle(gateway, t0 + grace_s)
    ended = gateway.interrupt_streams(SHUTTING_DOWN) if gateway.busy else 0
    if ended:
        await _until_idle(gateway, loop.time() + STREAMS_END_S)
        say(f"ended {ended} stream(s) still open after the {grace_s:g}s grace")
    say(f"stopped after {loop.time() - t0:.1f}s of draining")


async def _until_idle(gateway: Gateway, until: float) -> None:
    loop = asyncio.get_running_loop()
    # Polled: requests end in many places, and a shutdown can afford 50 ms of latency.
    while gateway.busy and loop.time() < until:  # noqa: ASYNC110
        await asyncio.sleep(POLL_S)
