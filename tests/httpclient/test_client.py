"""The upstream HTTP client against real local servers: framing, pooling, failures.

Raw asyncio servers send exactly the bytes a test needs (chunked, delimited by close,
interim 1xx answers, broken HTTP); the fake provider and a TLS server cover the common path.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from quotaflow.fake_provider import running_fake_provider
from quotaflow.httpclient import (
    BodyTooLarge,
    HttpClient,
    InvalidRequest,
    ServerDisconnected,
    UpstreamHTTPError,
)
from quotaflow.httpclient import client as client_mod
from tests.httpclient.conftest import Client, MakeClient, idle_connections
from tests.httpclient.servers import answer, make_ca, raw_server, read_request


async def test_fake_provider_answer_and_connection_reuse(client: Client) -> None:
    async with running_fake_provider(protocol="openai") as fake:
        body = orjson.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        )
        headers = {"Authorization": "Bearer sk-test-1", "Content-Type": "application/json"}
        for _ in range(5):
            resp = await client.post(
                fake.base_url + "/chat/completions", headers, body, timeout_s=5
            )
            data = orjson.loads(await resp.read())
            assert resp.status == 200
            assert data["usage"]["total_tokens"] > 0
            assert resp.headers["X-RateLimit-Limit-Requests"]  # case-insensitive headers
        assert client.opened == 1  # one keep-alive connection served all five
        assert idle_connections(client) in (1, None)


async def test_concurrent_requests_use_separate_connections(client: Client) -> None:
    async with running_fake_provider(protocol="openai") as fake:
        body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
        headers = {"Authorization": "Bearer sk-test-1", "Content-Type": "application/json"}

        async def one() -> int:
            resp = await client.post(
                fake.base_url + "/chat/completions", headers, body, timeout_s=5
            )
            await resp.read()
            return resp.status

        assert await asyncio.gather(*(one() for _ in range(8))) == [200] * 8
        assert client.opened == 8
        assert await asyncio.gather(*(one() for _ in range(8))) == [200] * 8
        assert client.opened == 8  # the second wave reused them


async def test_request_bytes_on_the_wire(client: Client) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(await read_request(r))
        w.write(answer(b"{}"))
        await w.drain()

    async with raw_server(handler) as url:
        resp = await client.post(
            url + "/v1/x?alt=sse",
            {"Authorization": "Bearer k", "Content-Length": "999", "Host": "evil"},
            b"payload",
            timeout_s=5,
        )
        await resp.read()
    head, body = seen[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/x?alt=sse HTTP/1.1"
    assert body == b"payload"
    names = [ln.split(":", 1)[0].lower() for ln in lines[1:] if ln]
    assert names.count("host") == 1 and names.count("content-length") == 1
    assert f"Host: 127.0.0.1:{url.rsplit(':', 1)[1]}" in lines
    assert "Content-Length: 7" in lines and "Authorization: Bearer k" in lines
    assert any(ln.startswith("User-Agent: quotaflow/") for ln in lines)


async def test_chunked_and_close_delimited_bodies(client: Client) -> None:
    async def chunked(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"hello ", b"chunked ", b"world"):
            w.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await w.drain()
            await asyncio.sleep(0.01)
        w.write(b"0\r\n\r\n")
        await w.drain()
        await read_request(r)  # the connection is kept alive for the next one
        w.write(answer(b"second"))
        await w.drain()

    async with raw_server(chunked) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.read() == b"hello chunked world"
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.read() == b"second"
        assert client.opened == 1

    async def until_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await w.drain()
        w.close()

    async with raw_server(until_close) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.read() == b"all of it"
        assert idle_connections(client) in (0, None)  # never reused: its end was the close


async def test_interim_answers_are_skipped(client: Client) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w.write(answer(b"final", "X-Which: final", status="201 Created"))
        await w.drain()

    async with raw_server(handler) as url:
        resp = await client.post(url, {}, b"x", timeout_s=5)
        assert (resp.status, resp.headers["x-which"], await resp.read()) == (201, "final", b"final")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(client: Client, encoding: str) -> None:
    data = b'{"usage": {"total_tokens": 3}}' * 50
    packed = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head, _ = await read_request(r)
        assert b"Accept-Encoding: gzip, deflate" in head
        w.write(answer(packed, f"Content-Encoding: {encoding}"))
        await w.drain()

    async with raw_server(handler) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.read() == data


async def test_streamed_body_arrives_piece_by_piece(client: Client) -> None:
    release = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await release.wait()
        w.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await w.drain()

    async with raw_server(handler) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.readany(5) == b"first"  # before the rest is even sent
        release.set()
        assert await resp.readany(5) == b"second"
        assert await resp.readany(5) == b""
        assert resp.complete


async def test_stream_cut_midway_raises(client: Client) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await w.drain()
        w.transport.abort()

    async with raw_server(handler) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.readany(5) == b"only part"
        with pytest.raises(ServerDisconnected):
            await resp.readany(5)


async def test_read_timeout_and_total_timeout(client: Client) -> None:
    async def slow_body(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await w.drain()
        await asyncio.sleep(5)

    async with raw_server(slow_body) as url:
        resp = await client.post(url, {}, b"", timeout_s=5)
        assert await resp.readany(1) == b"abc"
        with pytest.raises(TimeoutError):
            await resp.readany(0.2)
        assert idle_connections(client) in (0, None)
        # whole_body: the deadline covers the body too, not only the head
        resp = await client.post(url, {}, b"", timeout_s=0.3, whole_body=True)
        assert resp.status == 200
        with pytest.raises(TimeoutError):
            await resp.read()

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        await asyncio.sleep(5)

    async with raw_server(silent) as url:
        with pytest.raises(TimeoutError):
            await client.post(url, {}, b"", timeout_s=0.2)
        assert idle_connections(client) in (0, None)


async def test_connection_refused_and_broken_http(client: Client) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await client.post(f"http://127.0.0.1:{port}/", {}, b"", timeout_s=2)

    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"SMTP ready\r\n\r\n")
        await w.drain()
        await asyncio.sleep(1)

    async with raw_server(garbage) as url:
        with pytest.raises(UpstreamHTTPError, match="malformed HTTP response"):
            await client.post(url, {}, b"", timeout_s=2)

    async def hang_up(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.transport.abort()

    async with raw_server(hang_up) as url:
        with pytest.raises(ServerDisconnected):
            await client.post(url, {}, b"", timeout_s=2)


async def test_body_over_the_cap_is_refused(make_client: MakeClient) -> None:
    small = make_client(max_body_bytes=1000)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer(b"x" * 5000))
        await w.drain()

    try:
        async with raw_server(handler) as url:
            with pytest.raises(BodyTooLarge):  # its Content-Length says so: refused at the head
                await small.post(url, {}, b"", timeout_s=2)
    finally:
        await small.close()


async def test_unsendable_requests_are_refused_before_connecting(client: Client) -> None:
    with pytest.raises(InvalidRequest, match="header"):
        await client.post("http://127.0.0.1:1/", {"X-A": "v\r\nX-Injected: 1"}, b"", timeout_s=1)
    with pytest.raises(InvalidRequest, match="header"):
        await client.post("http://127.0.0.1:1/", {"X-A\r\nX-B": "v"}, b"", timeout_s=1)
    with pytest.raises(InvalidRequest, match="bad port"):
        await client.post("http://127.0.0.1:99999/", {}, b"", timeout_s=1)
    with pytest.raises(InvalidRequest, match="non-ASCII"):
        await client.post("http://127.0.0.1:1/caf\u00e9", {}, b"", timeout_s=1)
    with pytest.raises(InvalidRequest, match="http and https"):
        await client.post("ftp://example.org/", {}, b"", timeout_s=1)
    assert client.opened == 0


async def test_idle_connection_closed_by_the_server_is_retried_once(
    fast_client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keep-alive race: the server drops a long-idle connection as the request goes out."""
    served = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request(r)
        served += 1
        w.write(answer(b"one"))
        await w.drain()
        await read_request(r)  # the next request arrives on the now "idle" connection ...
        w.transport.abort()  # ... and the server drops it without an answer

    monkeypatch.setattr(client_mod, "RACE_IDLE_S", 0.0)
    async with raw_server(handler) as url:
        assert await (await fast_client.post(url, {}, b"", timeout_s=2)).read() == b"one"
        assert await (await fast_client.post(url, {}, b"", timeout_s=2)).read() == b"one"
    assert fast_client.opened == 2 and served == 2

    # A connection busy a moment ago that breaks is the provider failing: no silent retry.
    monkeypatch.setattr(client_mod, "RACE_IDLE_S", 60.0)
    async with raw_server(handler) as url:
        await (await fast_client.post(url, {}, b"", timeout_s=2)).read()
        with pytest.raises(ServerDisconnected):
            await fast_client.post(url, {}, b"", timeout_s=2)


async def test_expired_idle_connections_are_not_reused(make_client: MakeClient) -> None:
    c = make_client(keepalive_s=0.05)
    try:
        async with running_fake_provider(protocol="openai") as fake:
            body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
            h = {"Authorization": "Bearer sk-test-1", "Content-Type": "application/json"}
            await (await c.post(fake.base_url + "/chat/completions", h, body, timeout_s=5)).read()
            await asyncio.sleep(0.1)
            await (await c.post(fake.base_url + "/chat/completions", h, body, timeout_s=5)).read()
            assert c.opened == 2
    finally:
        await c.close()


async def test_tls_is_verified(tmp_path: Path, make_client: MakeClient) -> None:
    ca = make_ca(tmp_path)
    server_ctx = ca.server_context()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"echo": (await request.read()).decode()})

    app = web.Application()
    app.router.add_post("/v1/x", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    trusting = ca.client_context()
    good = make_client(ssl_context=trusting)
    default = make_client()  # the system's trust store doesn't know this certificate
    try:
        resp = await good.post(f"https://localhost:{port}/v1/x", {}, b"secret", timeout_s=5)
        assert orjson.loads(await resp.read()) == {"echo": "secret"}
        with pytest.raises(ssl.SSLCertVerificationError):
            await default.post(f"https://localhost:{port}/v1/x", {}, b"secret", timeout_s=5)
    finally:
        await good.close()
        await default.close()
        await runner.cleanup()


def _chunked(body: bytes, piece: int = 100_000) -> bytes:
    out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), piece):
        part = body[i : i + piece]
        out.append(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("size", [2_000_000, 5_000_000])
async def test_large_answers_complete_twice_on_one_connection(
    client: Client, framing: str, size: int
) -> None:
    """Bodies far over the back-pressure mark are read whole, and the connection stays usable."""
    bodies = [bytes([65 + i]) * size for i in range(2)]

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for body in bodies:
            await read_request(r)
            w.write(answer(body) if framing == "length" else _chunked(body))
            await w.drain()

    async with raw_server(handler) as url:
        for body in bodies:
            resp = await client.post(url, {}, b"", timeout_s=30, whole_body=True)
            await asyncio.sleep(0.05)  # the body arrives before anyone reads it
            assert await resp.read() == body
        assert client.opened == 1


async def test_answer_completed_while_paused_leaves_a_working_connection(
    fast_client: HttpClient,
) -> None:
    """The last bytes crossing the back-pressure mark also end the message: resumed anyway."""
    from quotaflow.httpclient.response import HIGH_WATER

    body = b"z" * (HIGH_WATER + 1000)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer(body))
        await w.drain()
        await read_request(r)
        w.write(answer(b"next"))
        await w.drain()

    async with raw_server(handler) as url:
        resp = await fast_client.post(url, {}, b"", timeout_s=30)
        for _ in range(1000):  # a stream reader slow to come back: the body ends meanwhile
            if resp.complete:
                break
            await asyncio.sleep(0.01)
        assert resp.complete
        assert await resp.readany(5) == body
        resp = await fast_client.post(url, {}, b"", timeout_s=30, whole_body=True)
        assert await resp.read(30) == b"next"
        assert fast_client.opened == 1


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_body_over_the_cap_fails_as_too_large_not_as_timeout(
    framing: str, make_client: MakeClient
) -> None:
    capped = make_client(max_body_bytes=3_000_000)
    body = b"y" * 5_000_000

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(answer(body) if framing == "length" else _chunked(body))
        await w.drain()

    try:
        async with raw_server(handler) as url:
            with pytest.raises(BodyTooLarge):
                resp = await capped.post(url, {}, b"", timeout_s=30, whole_body=True)
                await resp.read()
    finally:
        await capped.close()
