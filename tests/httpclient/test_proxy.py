"""Proxies: CONNECT tunnels for https (TLS checked against the origin), absolute-form http,
Basic proxy auth, NO_PROXY, a refusing proxy, and the ``proxy`` setting over the environment."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from quotaflow.httpclient.connect import ProxyError, ProxyRules
from tests.httpclient.conftest import MakeClient
from tests.httpclient.servers import LocalCA, answer, forward_proxy, make_ca, raw_server
from tests.httpclient.servers import read_request as read_req

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@asynccontextmanager
async def tls_origin(ca: LocalCA) -> AsyncIterator[int]:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=b"tls:" + await request.read())

    app = web.Application()
    app.router.add_post("/v1/x", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ca.server_context())
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def echo_handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while True:
        head, body = await read_req(r)
        w.write(answer(b"plain:" + head.split(b"\r\n", 1)[0] + b"|" + body))
        await w.drain()


async def test_https_through_a_connect_tunnel_with_the_origin_certificate_checked(
    make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = make_ca(tmp_path)
    async with tls_origin(ca) as port, forward_proxy(user="u", password="p w") as (proxy, log):
        monkeypatch.setenv("https_proxy", proxy)
        c = make_client(ssl_context=ca.client_context())
        try:
            for _ in range(2):
                resp = await c.post(f"https://localhost:{port}/v1/x", {}, b"hi", timeout_s=10)
                assert await resp.read() == b"tls:hi"
            assert c.opened == 1
            # the certificate is the origin's, checked against the origin's name
            with pytest.raises(ssl.SSLCertVerificationError):
                await c.post(f"https://127.0.0.1:{port}/v1/x", {}, b"hi", timeout_s=10)
        finally:
            await c.close()
    assert log.lines[0] == f"CONNECT localhost:{port} HTTP/1.1"
    assert log.auths[0] == "Basic dTpwIHc="  # u:p w


async def test_plain_http_goes_to_the_proxy_in_absolute_form(
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with raw_server(echo_handler) as origin, forward_proxy() as (proxy, log):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        c = make_client()
        try:
            resp = await c.post(origin + "/v1/x?q=1", {}, b"body", timeout_s=10)
            assert await resp.read() == b"plain:POST /v1/x?q=1 HTTP/1.1|body"
        finally:
            await c.close()
    assert log.lines == [f"POST {origin}/v1/x?q=1 HTTP/1.1"]


@pytest.mark.parametrize("name", ["NO_PROXY", "no_proxy"])
async def test_no_proxy_hosts_are_called_directly(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    async with raw_server(echo_handler) as origin, forward_proxy() as (proxy, log):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv(name, "example.org, .internal,127.0.0.1")
        c = make_client()
        try:
            resp = await c.post(origin + "/x", {}, b"", timeout_s=10)
            assert (await resp.read()).startswith(b"plain:")
        finally:
            await c.close()
    assert log.lines == []


@pytest.mark.parametrize(
    ("no_proxy", "direct"),
    [("127.0.0.0/8", True), ("10.0.0.0/8,fd00::/8", False), ("127.0.0.1/32", True)],
)
async def test_no_proxy_cidr_blocks_match_address_origins(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, no_proxy: str, direct: bool
) -> None:
    """``NO_PROXY=10.0.0.0/8`` (curl's reading): an origin given by an address inside the
    block is called directly; one outside it goes through the proxy."""
    async with raw_server(echo_handler) as origin, forward_proxy() as (proxy, log):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        c = make_client()
        try:
            resp = await c.post(origin + "/x", {}, b"", timeout_s=10)
            assert (await resp.read()).startswith(b"plain:")
        finally:
            await c.close()
    assert (log.lines == []) is direct


def test_no_proxy_rules_read_blocks_ports_and_names() -> None:
    rules = ProxyRules(
        "http://proxy.example:3128", {"NO_PROXY": "10.0.0.0/8, [fd00::1]:8443, .corp, 192.168.1.7"}
    )
    direct = [("10.1.2.3", 80), ("fd00::1", 8443), ("api.corp", 443), ("192.168.1.7", 443)]
    proxied = [("11.0.0.1", 80), ("fd00::1", 443), ("corp.example", 443), ("192.168.1.8", 443)]
    assert [rules.for_origin("https", h, p) for h, p in direct] == [None] * 4
    assert all(rules.for_origin("https", h, p) is not None for h, p in proxied)


async def test_a_proxy_wanting_credentials_is_a_clear_error(
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy(user="u", password="p") as (proxy, log):
        monkeypatch.setenv("HTTPS_PROXY", proxy.replace("u:p@", ""))
        c = make_client()
        try:
            with pytest.raises(ProxyError, match=r"wants authentication \(407\)"):
                await c.post("https://provider.invalid/v1/x", {}, b"", timeout_s=10)
        finally:
            await c.close()
    assert log.lines == ["CONNECT provider.invalid:443 HTTP/1.1"]


@pytest.mark.parametrize("status", ["403 Forbidden", "502 Bad Gateway"])
async def test_a_refusing_proxy_is_a_clear_error(make_client: MakeClient, status: str) -> None:
    async with forward_proxy(refuse=status) as (proxy, _):
        c = make_client(proxy=proxy)  # the setting, no environment
        try:
            with pytest.raises(ProxyError, match=f"refused the tunnel.*{status}"):
                await c.post("https://provider.invalid/v1/x", {}, b"", timeout_s=10)
        finally:
            await c.close()


async def test_the_setting_overrides_the_environment(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with raw_server(echo_handler) as origin, forward_proxy() as (proxy, log):
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        direct = make_client(proxy="none")
        try:
            assert (await (await direct.post(origin, {}, b"", timeout_s=10)).read()).startswith(
                b"plain:"
            )
        finally:
            await direct.close()
        via = make_client(proxy=proxy)
        try:
            await (await via.post(origin + "/p", {}, b"", timeout_s=10)).read()
        finally:
            await via.close()
    assert log.lines == [f"POST {origin}/p HTTP/1.1"]


async def test_the_connect_timeout_covers_the_proxy_tunnel(make_client: MakeClient) -> None:
    """A proxy that takes the connection but never answers CONNECT: the connect timeout,
    not the (much longer) request timeout, ends the wait."""

    async def mute(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)

    async with raw_server(mute) as proxy:
        c = make_client(proxy=proxy, connect_timeout_s=0.5)
        async with asyncio.timeout(30) as outer:  # only a hang gets this far
            with pytest.raises(TimeoutError):
                await c.post("https://provider.invalid/v1/x", {}, b"", timeout_s=None)
        assert not outer.expired()
