"""The HTTP client against hostile or broken servers: re-sends, huge heads, bombs, cut bodies."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib

import pytest

from quotaflow.httpclient import BodyTooLarge, HttpClient, ServerDisconnected, UpstreamHTTPError
from quotaflow.httpclient import client as client_mod
from tests.httpclient.conftest import Client, MakeClient
from tests.httpclient.servers import answer, raw_server, read_request


async def test_a_server_that_read_the_post_then_closed_gets_it_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle connection, request read, a second of work, close: a failure, not a re-send."""
    posts = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal posts
        await read_request(r)
        posts += 1
        w.write(answer(b"warm-up"))
        await w.drain()
        await read_request(r)
        posts += 1
        await asyncio.sleep(1.0)  # working on it (and, at a provider, billing it) ...
        w.transport.abort()  # ... then gone without an answer

    monkeypatch.setattr(client_mod, "RACE_IDLE_S", 0.0)  # every reuse counts as long-idle
    async with raw_server(handler) as url:
        await (await client.post(url, {}, b"", timeout_s=5)).read()
        with pytest.raises(ServerDisconnected):
            await client.post(url, {}, b"{}", timeout_s=5)
    assert posts == 2  # the warm-up and the one POST: never sent a second time
    assert client.opened == 1


async def test_a_close_right_after_the_write_is_still_the_idle_race(
    fast_client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        served.append((await read_request(r))[1])
        w.write(answer(b"one"))
        await w.drain()
        await r.read(1)  # the reused connection's request starts arriving: dropped at once
        w.transport.abort()

    monkeypatch.setattr(client_mod, "RACE_IDLE_S", 0.0)
    monkeypatch.setattr(client_mod, "RACE_CLOSE_S", 30.0)  # a loaded machine may be slow to see it
    async with raw_server(handler) as url:
        await (await fast_client.post(url, {}, b"a", timeout_s=5)).read()
        assert await (await fast_client.post(url, {}, b"b", timeout_s=5)).read() == b"one"
    assert served == [b"a", b"b"] and fast_client.opened == 2


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * 70_000 + b"\r\n",  # one 70 KB header
        b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)),  # 10,000 small ones
    ],
    ids=["70KB-header", "10000-headers"],
)
async def test_oversized_heads_are_refused(client: Client, head: bytes) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok")
        await w.drain()
        await asyncio.sleep(2)

    async with raw_server(handler) as url:
        with pytest.raises(UpstreamHTTPError, match="response head"):
            await client.post(url, {}, b"", timeout_s=5)


async def test_an_endless_head_costs_no_more_than_the_cap(client: Client) -> None:
    """A server streaming one header line forever: refused early, memory stays small."""
    piece = b"a" * 65_536

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(1024):  # up to 64 MB
            w.write(piece)
            await w.drain()

    async with raw_server(handler) as url:
        tracemalloc.start()
        try:
            with pytest.raises(UpstreamHTTPError, match="response head"):
                await client.post(url, {}, b"", timeout_s=30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 << 20  # a few socket reads, not the header


async def test_a_gzip_bomb_stops_at_the_cap_in_memory(make_client: MakeClient) -> None:
    cap = 8 << 20
    bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)  # ~250 KB on the wire
    capped = make_client(max_body_bytes=cap)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer(bomb, "Content-Encoding: gzip"))
        await w.drain()
        await asyncio.sleep(2)

    try:
        async with raw_server(handler) as url:
            tracemalloc.start()
            try:
                with pytest.raises(BodyTooLarge):
                    resp = await capped.post(url, {}, b"", timeout_s=30, whole_body=True)
                    await resp.read()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        await capped.close()
    assert peak < 2 * cap


@pytest.mark.parametrize("wrapped", [True, False], ids=["zlib-deflate", "raw-deflate"])
async def test_deflate_with_or_without_its_zlib_wrapper(client: Client, wrapped: bool) -> None:
    data = b'{"usage": {"total_tokens": 3}}' * 100
    if wrapped:
        packed = zlib.compress(data)
    else:
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = raw.compress(data) + raw.flush()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer(packed, "Content-Encoding: deflate"))
        await w.drain()

    async with raw_server(handler) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.read() == data


async def test_a_truncated_compressed_body_is_an_error(client: Client) -> None:
    packed = gzip.compress(b"x" * 10_000 + bytes(range(256)) * 40)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        cut = packed[: len(packed) // 2]  # framing says complete; the gzip stream is not
        w.write(answer(cut, "Content-Encoding: gzip"))
        await w.drain()

    async with raw_server(handler) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        with pytest.raises(UpstreamHTTPError, match="truncated"):
            await resp.read()
