"""Opening connections: a black-holed first address, the DNS cache."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from quotaflow.httpclient.connect import Resolver
from tests.httpclient.conftest import MakeClient
from tests.httpclient.servers import answer, raw_server, read_request


@pytest.fixture
def black_hole() -> Iterator[tuple[str, int]]:
    """A local address whose SYNs go unanswered: a listener that never accepts, its queue full.

    (Linux drops SYNs to a full accept queue, so a connect hangs as on a black-holed route.)
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    addr = listener.getsockname()
    filler = socket.create_connection(addr)  # the one queued connection the backlog takes
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        with pytest.raises(TimeoutError):  # the queue is full: this is a black hole now
            probe.connect(addr)
        yield addr
    finally:
        probe.close()
        filler.close()
        listener.close()


async def test_a_black_holed_first_address_falls_through_to_the_next(
    black_hole: tuple[str, int], make_client: MakeClient
) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer(b"via the second address"))
        await w.drain()

    async with raw_server(handler) as url:
        port = int(url.rsplit(":", 1)[1])
        infos = [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", black_hole),
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
        ]
        # a connect timeout far longer than the wait for the next address
        c = make_client(connect_timeout_s=20, resolver=Resolver(hosts={"provider.test": infos}))
        try:
            started = time.monotonic()
            resp = await c.post(f"http://provider.test:{port}/", {}, b"", timeout_s=30)
            took = time.monotonic() - started
            assert await resp.read() == b"via the second address"
        finally:
            await c.close()
    print(f"connected via the second address after {took * 1000:.0f} ms")


async def test_addresses_are_cached_for_a_while() -> None:
    r = Resolver(ttl_s=60)
    first = await r.resolve("localhost", 80)
    assert await r.resolve("localhost", 80) is first  # no second lookup
    expired = Resolver(ttl_s=0)
    assert await expired.resolve("localhost", 80) is not await expired.resolve("localhost", 80)
    assert (await r.resolve("127.0.0.1", 8))[0][4] == ("127.0.0.1", 8)  # literals: no lookup
