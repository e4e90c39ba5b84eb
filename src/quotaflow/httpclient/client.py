"""The HTTP client quotaflow talks to providers with: keep-alive pools per origin.

Only what a gateway needs, and lean on purpose (measured: a pass-through proxy on it costs
about half the CPU per request of one on aiohttp's client): ``POST`` with a body, HTTP/1.1,
TLS, responses with a length, chunked or delimited by close, gzip/deflate bodies, streaming
with back-pressure, a total timeout, a connect timeout and a per-read timeout for streams.

A connection taken from the pool may have been closed by the server in the meantime (an
idle keep-alive race): if one that idled a while closes right after the request went out,
before any byte of the answer, the request is sent once more on a new connection. Any
other close is a failure of the provider, left to the gateway's fallback — never a silent
second POST to a server that may have read the first and be billing it.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from quotaflow._version import __version__
from quotaflow.httpclient.connect import Proxy, ProxyRules, Resolver, open_socket, tunnel
from quotaflow.httpclient.connection import Connection
from quotaflow.httpclient.errors import InvalidRequest, ServerDisconnected
from quotaflow.httpclient.response import Response

USER_AGENT = f"quotaflow/{__version__}"
# A reused connection that closes with no answer after idling this long was most likely
# closed by the server's idle timeout as the request went out: sent again, on a new one.
RACE_IDLE_S = 1.0
# ... and the close of such a race follows the write at once: later than this, the server
# may have read the request and worked on it, and sending it again could bill it twice.
RACE_CLOSE_S = 0.25
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field names
_FORBIDDEN = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True, slots=True)
class Target:
    origin: str  # scheme://host:port, the pool's key
    host: str
    port: int
    tls: bool
    head: bytes  # request line + Host + fixed headers up to (not including) the variable ones


@dataclass(frozen=True, slots=True)
class Route:
    """How an origin is reached: directly, or through a proxy (decided once per origin)."""

    proxy: Proxy | None
    head: bytes | None  # the request head to send instead of the target's (absolute form)


@functools.lru_cache(maxsize=1024)
def target_of(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"only http and https URLs can be called, not {url!r}")
    host = parts.hostname
    if not host:
        raise InvalidRequest(f"no host in {url!r}")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError as exc:  # not a number, or out of range
        raise InvalidRequest(f"bad port in {url!r}: {exc}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(c in path for c in " \r\n\0"):
        raise InvalidRequest(f"invalid characters in the path of {url!r}")
    host_hdr = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        host_hdr += f":{port}"
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: {host_hdr}\r\n".encode("ascii")
    except UnicodeEncodeError:
        raise InvalidRequest(f"non-ASCII characters in {url!r}: percent-encode them") from None
    return Target(f"{parts.scheme}://{host_hdr}", host, port, tls, head)


def encode_headers(headers: Mapping[str, str], body_len: int) -> bytes:
    lines = [f"Content-Length: {body_len}\r\n"]
    has_ua = has_ae = False
    for name, value in headers.items():
        low = name.lower()
        if low in _FORBIDDEN:
            continue  # framing is ours to set
        if not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value or "\0" in value:
            raise InvalidRequest(f"invalid characters in the {name!r} header")
        has_ua = has_ua or low == "user-agent"
        has_ae = has_ae or low == "accept-encoding"
        lines.append(f"{name}: {value}\r\n")
    if not has_ua:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    if not has_ae:
        lines.append("Accept-Encoding: gzip, deflate\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


class HttpClient:
    """Keep-alive connection pools per origin; one request per connection at a time."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 10.0,
        keepalive_s: float = 30.0,
        max_idle_per_origin: int = 256,
        max_body_bytes: int = 64 << 20,
        ssl_context: ssl.SSLContext | None = None,
        on_request: Callable[[str], None] | None = None,
        proxy: str | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """``proxy``: see :class:`ProxyRules` (None: the environment's ``*_PROXY``)."""
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.max_idle_per_origin = max_idle_per_origin
        self.max_body_bytes = max_body_bytes
        self._ssl = ssl_context
        self._on_request = on_request  # a test hook: called with each URL before sending
        self._proxies = ProxyRules(proxy)
        self._routes: dict[str, Route] = {}
        self._resolver = resolver or Resolver()
        self._idle: dict[str, list[Connection]] = {}
        self._busy: weakref.WeakSet[Connection] = weakref.WeakSet()  # sent, not yet back
        self._swept_at = time.monotonic()
        self.closed = False
        self.opened = 0  # connections opened so far (reuse shows as few)

    # -- the one operation -----------------------------------------------------------------
    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout_s: float | None,
        whole_body: bool = False,
    ) -> Response:
        """:meth:`.base.Transport.post`: the body may still be arriving when this returns."""
        if self.closed:
            raise ServerDisconnected("the HTTP client is closed")
        t = target_of(url)
        head = t.head
        if self._proxies.any:
            route = self._route(t)
            if route.head is not None:
                head = route.head
        request = head + encode_headers(headers, len(body)) + body
        if self._on_request is not None:
            self._on_request(url)
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        conn = self._take_idle(t.origin)
        if conn is not None:
            idle_s = time.monotonic() - conn.idle_since
            try:
                return await self._send_on(conn, request, deadline, whole_body)
            except ServerDisconnected:
                if (
                    conn.got_bytes
                    or idle_s < RACE_IDLE_S
                    or conn.lost_at - conn.sent_at > RACE_CLOSE_S
                ):
                    raise  # the server had the request and broke the exchange: no re-send
                # the server closed the long-idle connection as we reused it
        conn = await self._connect(t, deadline)
        return await self._send_on(conn, request, deadline, whole_body)

    async def _send_on(
        self, conn: Connection, request: bytes, deadline: float | None, whole_body: bool
    ) -> Response:
        self._busy.add(conn)
        try:
            return await conn.start(request, deadline, whole_body)
        except BaseException:
            conn.abandon()
            raise

    # -- connections -----------------------------------------------------------------------
    def _take_idle(self, origin: str) -> Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: warm, least likely to be timed out
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                return conn
            conn.close()
        return None

    def _give_back(self, conn: Connection) -> None:
        now = time.monotonic()
        self._busy.discard(conn)
        if self.closed or conn.closed:
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self.max_idle_per_origin:
            conn.close()
        else:
            conn.idle_since = now
            idle.append(conn)
        if now - self._swept_at > self.keepalive_s:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        for origin, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and now - c.idle_since < self.keepalive_s]
            for c in idle:
                if c not in keep:
                    c.close()
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]

    def _route(self, t: Target) -> Route:
        route = self._routes.get(t.origin)
        if route is None:
            proxy = self._proxies.for_origin("https" if t.tls else "http", t.host, t.port)
            head = None
            if proxy is not None and not t.tls:
                # a plain-http request goes to the proxy whole: absolute URL, proxy credentials
                auth = "" if proxy.auth is None else f"Proxy-Authorization: {proxy.auth}\r\n"
                head = b"POST " + t.origin.encode("ascii") + t.head[5:] + auth.encode("ascii")
            route = self._routes[t.origin] = Route(proxy, head)
        return route

    async def _connect(self, t: Target, deadline: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        ctx = self._ssl_context() if t.tls else None
        proxy = self._route(t).proxy if self._proxies.any else None
        until = loop.time() + self.connect_timeout_s
        # one timeout over all of it: DNS, the addresses raced, the proxy's tunnel, TLS
        async with asyncio.timeout_at(until if deadline is None else min(until, deadline)):
            if proxy is None:
                sock = await open_socket(self._resolver, t.host, t.port)
            else:
                sock = await open_socket(self._resolver, proxy.host, proxy.port)
            try:
                if proxy is not None and t.tls:
                    await tunnel(sock, proxy, t.host, t.port)
                _, conn = await loop.create_connection(
                    lambda: Connection(t.origin, self._give_back, self.max_body_bytes),
                    sock=sock,
                    ssl=ctx,
                    server_hostname=t.host if ctx is not None else None,
                )
            except BaseException:
                sock.close()
                raise
        self.opened += 1
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        return self._ssl

    @property
    def idle_connections(self) -> int:
        return sum(not c.closed for v in self._idle.values() for c in v)

    async def close(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        await asyncio.sleep(0)  # let the transports finish closing
