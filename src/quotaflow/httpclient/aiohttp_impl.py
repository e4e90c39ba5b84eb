"""The Transport on aiohttp's client (``settings.http_client: aiohttp``).

For networks where aiohttp's wider field use is worth its CPU (measured: 35–55 % more of
the gateway's CPU per request than the default). Held to the same contract and the same
tests as :class:`~.client.HttpClient`: no redirects followed, no cookie jar, the proxy
decided by our :class:`~.connect.ProxyRules` and passed explicitly (never ``trust_env``),
the body capped and decompressed by our :class:`~.decoding.Decoder` (aiohttp's own
decompression is off: it would inflate a bomb before any cap), response heads capped, and
failures raised as ``OSError``/``TimeoutError`` like the default client's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy

from quotaflow.httpclient.client import USER_AGENT, encode_headers, target_of
from quotaflow.httpclient.connect import (
    HAPPY_EYEBALLS_DELAY_S,
    Proxy,
    ProxyError,
    ProxyRules,
    Resolver,
)
from quotaflow.httpclient.connection import MAX_HEADERS
from quotaflow.httpclient.decoding import DecodeError, Decoder, decoder_for
from quotaflow.httpclient.errors import BodyTooLarge, ServerDisconnected, UpstreamHTTPError

_OURS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class _ResolverAdapter(AbstractResolver):
    """Our resolver (its cache, its fixed hosts) in the shape aiohttp's connector wants."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=addr[4][0],
                port=addr[4][1],
                family=addr[0],
                proto=addr[2],
                flags=socket.AI_NUMERICHOST,
            )
            for addr in await self._resolver.resolve(host, port)
        ]

    async def close(self) -> None:
        return None


def _transport_error(exc: BaseException) -> BaseException:
    """aiohttp's failure as the one the default client raises for the same event."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        if exc.status == 407:
            return ProxyError(f"the proxy wants authentication (407): {exc.message}")
        return ProxyError(f"the proxy refused the tunnel: {exc.status} {exc.message}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return exc  # already an ssl.SSLCertVerificationError
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ServerDisconnected(f"the provider broke the answer: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamHTTPError(f"malformed HTTP response (response head refused): {exc}")
    if isinstance(exc, OSError | TimeoutError):
        return exc
    return UpstreamHTTPError(f"{type(exc).__name__}: {exc}")


class AiohttpResponse:
    """A response of :class:`AiohttpClient`, read under our cap and decoder."""

    __slots__ = ("_deadline", "_decoder", "_done", "_max_body", "_resp", "_total", "status")

    def __init__(self, resp: aiohttp.ClientResponse, max_body: int, deadline: float | None) -> None:
        self.status = resp.status
        self._resp = resp
        self._max_body = max_body
        self._deadline = deadline  # whole_body: the body too must be in by then
        self._total = 0
        self._done = False
        try:
            self._decoder: Decoder | None = decoder_for(resp.headers.get("content-encoding", ""))
        except ValueError as exc:
            resp.close()
            raise UpstreamHTTPError(str(exc)) from None
        length = resp.content_length
        if length is not None and length > max_body:
            resp.close()
            raise BodyTooLarge(f"response body of {length} bytes, over {max_body}")

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._resp.headers

    @property
    def complete(self) -> bool:
        return self._done or self._resp.content.is_eof()

    async def _piece(self) -> bytes:
        try:
            data = await self._resp.content.readany()
        except (aiohttp.ClientError, OSError) as exc:
            self._resp.close()
            raise _transport_error(exc) from None
        try:
            if not data:
                self._done = True
                tail = self._decoder.finish() if self._decoder is not None else b""
                self._resp.release()
                return tail
            pieces = (
                [data]
                if self._decoder is None
                else self._decoder.decode(data, self._max_body - self._total)
            )
        except OverflowError:
            self._resp.close()
            raise BodyTooLarge(f"response body over {self._max_body} bytes") from None
        except DecodeError as exc:
            self._resp.close()
            raise UpstreamHTTPError(str(exc)) from None
        out = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._total += len(out)
        if self._total > self._max_body:
            self._resp.close()
            raise BodyTooLarge(f"response body over {self._max_body} bytes")
        return out

    async def read(self, timeout_s: float | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = self._deadline
        if timeout_s is not None:
            until = loop.time() + timeout_s
            deadline = until if deadline is None else min(deadline, until)
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout_at(deadline):
                while not self._done:
                    chunks.append(await self._piece())
        except TimeoutError:
            self._resp.close()
            raise
        return b"".join(chunks)

    async def readany(self, timeout_s: float | None = None) -> bytes:
        while not self._done:
            try:
                async with asyncio.timeout(timeout_s):
                    data = await self._piece()
            except TimeoutError:
                self._resp.close()
                raise
            if data or self._done:
                return data
        return b""

    def release(self) -> None:
        if self._done:
            self._resp.release()
        else:
            self._resp.close()

    def close(self) -> None:
        self._resp.close()


class AiohttpClient:
    """The :class:`~.base.Transport` on an aiohttp session (created on first use)."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 10.0,
        keepalive_s: float = 30.0,
        max_body_bytes: int = 64 << 20,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.max_body_bytes = max_body_bytes
        self._ssl = ssl_context
        self._proxies = ProxyRules(proxy)
        self._proxy_of: dict[str, Proxy | None] = {}
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self.closed = False
        self.opened = 0  # connections opened so far, as the default client counts them

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0,
            keepalive_timeout=self.keepalive_s,
            ttl_dns_cache=10,
            happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S,
            ssl=self._ssl if self._ssl is not None else True,
            resolver=_ResolverAdapter(self._resolver) if self._resolver is not None else None,
        )
        counting = aiohttp.TraceConfig()
        counting.on_connection_create_end.append(self._count_connection)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[counting],
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            max_headers=MAX_HEADERS,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self.connect_timeout_s, sock_connect=self.connect_timeout_s
            ),
        )
        return self._session

    async def _count_connection(self, *_: object) -> None:
        self.opened += 1

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout_s: float | None,
        whole_body: bool = False,
    ) -> AiohttpResponse:
        if self.closed:
            raise ServerDisconnected("the HTTP client is closed")
        t = target_of(url)  # the same checks, the same InvalidRequest as the default client
        encode_headers(headers, len(body))
        proxy = self._proxy_of.get(t.origin, False)
        if proxy is False:
            proxy = self._proxy_of[t.origin] = (
                self._proxies.for_origin("https" if t.tls else "http", t.host, t.port)
                if self._proxies.any
                else None
            )
        sent = {k: v for k, v in headers.items() if k.lower() not in _OURS}
        lower = {k.lower() for k in sent}
        if "user-agent" not in lower:
            sent["User-Agent"] = USER_AGENT
        if "accept-encoding" not in lower:
            sent["Accept-Encoding"] = "gzip, deflate"
        session = self._session or self._open()
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                resp = await session.post(
                    url,
                    data=body,
                    headers=sent,
                    proxy=proxy.url if isinstance(proxy, Proxy) else None,
                    allow_redirects=False,
                )
        except (aiohttp.ClientError, OSError) as exc:
            raise _transport_error(exc) from None
        return AiohttpResponse(resp, self.max_body_bytes, deadline if whole_body else None)

    async def close(self) -> None:
        self.closed = True
        if self._session is not None:
            await self._session.close()
