"""Opening a connection to an origin: a short DNS cache, Happy Eyeballs, an HTTP proxy.

Everything here runs once per new connection, never per request: the proxy to use is
decided once per origin (reading the environment each time costs ~0.2 ms), addresses are
cached for :data:`DNS_TTL_S`, and when the first address doesn't answer the next one is
tried after :data:`HAPPY_EYEBALLS_DELAY_S` (RFC 8305, via ``aiohappyeyeballs``) instead of
waiting out the connect timeout on a black-holed route.

Proxies: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` in either case (lower case wins, as
curl does), or ``settings.proxy``. An https origin is reached through a ``CONNECT`` tunnel,
TLS then runs end to end and the certificate is checked against the origin; an http origin
is sent the request in absolute form. ``user:password@`` in the proxy URL becomes Basic
``Proxy-Authorization``. ``NO_PROXY`` names hosts, ``.domain`` suffixes, ``host:port`` and
address blocks (``10.0.0.0/8``), which match origins given by address.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiohappyeyeballs

from quotaflow.httpclient.errors import UpstreamHTTPError

DNS_TTL_S = 10.0
HAPPY_EYEBALLS_DELAY_S = 0.25
MAX_PROXY_HEAD = 16 << 10

AddrInfo = aiohappyeyeballs.AddrInfoType


class ProxyError(UpstreamHTTPError):
    """The proxy refused or broke the tunnel (407, 403, 502 ...)."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    auth: str | None  # the Proxy-Authorization value, from user:password in the URL
    shown: str  # the proxy's URL without its credentials, for messages
    url: str  # as configured (credentials included)


def parse_proxy(url: str) -> Proxy:
    """A proxy from its URL (``http://[user:password@]host[:port]``); ``ValueError`` if not."""
    if "://" not in url:
        url = "http://" + url  # curl's habit: HTTPS_PROXY=host:3128 means an http proxy
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"proxy {url!r}: only http:// proxies are supported")
    if not parts.hostname:
        raise ValueError(f"proxy {url!r} has no host")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"proxy {url!r} has a bad port") from None
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    host_hdr = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Proxy(parts.hostname, port, auth, f"http://{host_hdr}:{port}", url)


class ProxyRules:
    """Which proxy, if any, an origin goes through: read once, asked once per origin.

    ``override`` is ``settings.proxy``: a proxy URL for every provider (``NO_PROXY`` still
    applies), ``"none"`` for direct connections whatever the environment says, or ``None``
    for the environment's ``HTTPS_PROXY``/``HTTP_PROXY``.
    """

    def __init__(self, override: str | None = None, env: Mapping[str, str] | None = None) -> None:
        found = _env_proxies(env)
        self._no_proxy = _no_proxy_rules(found.get("no", ""))
        self._by_scheme: dict[str, Proxy] = {}
        if override is not None and override.strip().lower() == "none":
            return
        for scheme in ("http", "https"):
            url = override if override is not None else found.get(scheme)
            if url:
                self._by_scheme[scheme] = parse_proxy(url)

    @property
    def any(self) -> bool:
        return bool(self._by_scheme)

    def for_origin(self, scheme: str, host: str, port: int) -> Proxy | None:
        proxy = self._by_scheme.get(scheme)
        if proxy is None:
            return None
        if self._no_proxy and _bypassed(self._no_proxy, host.lower(), port):
            return None
        return proxy


NoProxyRule = tuple[str, int | None, ipaddress.IPv4Network | ipaddress.IPv6Network | None]


def _no_proxy_rules(value: str) -> list[NoProxyRule]:
    """``NO_PROXY`` as (host or domain suffix, port or None, network or None) rules; ``*``
    matches all, and an address or CIDR block (``10.0.0.0/8``, ``fd00::/8``) matches the IP
    literals inside it, as curl reads it."""
    rules: list[NoProxyRule] = []
    for item in value.split(","):
        item = item.strip().lower()
        if not item:
            continue
        name, port = item, None
        if "/" not in item and (item.count(":") == 1 or item.startswith("[")):
            head, _, tail = item.rpartition(":")  # host:port, [v6]:port
            if tail.isdigit() and head:
                name, port = head, int(tail)
        name = name.strip("[]").lstrip("*").lstrip(".")
        try:
            network = ipaddress.ip_network(name, strict=False)
        except ValueError:
            network = None
        rules.append((name, port, network))
    return rules


def _bypassed(rules: list[NoProxyRule], host: str, port: int) -> bool:
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            host.strip("[]")
        )
    except ValueError:
        ip = None
    for name, only_port, network in rules:
        if only_port is not None and only_port != port:
            continue
        if network is not None:
            if ip is not None and ip.version == network.version and ip in network:
                return True
        elif name == "" or host == name or host.endswith("." + name):
            return True  # an empty name is "*": every host
    return False


def _env_proxies(env: Mapping[str, str] | None) -> dict[str, str]:
    """``*_proxy`` variables by scheme, lower case winning over upper case."""
    source = env if env is not None else os.environ
    found: dict[str, str] = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        for variant in (name, name.lower()):  # the lower-case one, read last, wins
            value = source.get(variant)
            if value:
                found[name.split("_")[0].lower()] = value
    return found


class Resolver:
    """``getaddrinfo`` with a short cache (a busy gateway opens connections in bursts)."""

    def __init__(
        self, ttl_s: float = DNS_TTL_S, hosts: Mapping[str, list[AddrInfo]] | None = None
    ) -> None:
        self.ttl_s = ttl_s
        self._hosts = dict(hosts or {})  # fixed answers, like /etc/hosts (tests use it)
        self._cache: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}

    async def resolve(self, host: str, port: int) -> list[AddrInfo]:
        fixed = self._hosts.get(host)
        if fixed is not None:
            return fixed
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            addr: tuple[str, int] | tuple[str, int, int, int] = (
                (host, port, 0, 0) if ip.version == 6 else (host, port)
            )
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr)]
        now = time.monotonic()
        hit = self._cache.get((host, port))
        if hit is not None and hit[0] > now:
            return hit[1]
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found: list[AddrInfo] = list(infos)
        if not found:
            raise OSError(f"no address found for {host!r}")
        if len(self._cache) > 1024:
            self._cache.clear()  # providers are few: only a misconfiguration gets here
        self._cache[(host, port)] = (now + self.ttl_s, found)
        return found


async def open_socket(resolver: Resolver, host: str, port: int) -> socket.socket:
    """A connected, non-blocking socket to ``host:port``, racing its addresses."""
    infos = await resolver.resolve(host, port)
    return await aiohappyeyeballs.start_connection(
        infos,
        happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S,
        interleave=1,
    )


async def tunnel(sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    """Ask ``proxy`` (connected on ``sock``) for a tunnel to ``host:port``."""
    loop = asyncio.get_running_loop()
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {where} HTTP/1.1\r\n", f"Host: {where}\r\n"]
    if proxy.auth is not None:
        lines.append(f"Proxy-Authorization: {proxy.auth}\r\n")
    await loop.sock_sendall(sock, ("".join(lines) + "\r\n").encode("ascii"))
    head = b""
    while b"\r\n\r\n" not in head:
        # read little by little: what follows the head is the origin's TLS, not ours
        chunk = await loop.sock_recv(sock, 1)
        if not chunk:
            raise ProxyError(f"the proxy {proxy.shown} closed the connection during CONNECT")
        head += chunk
        if len(head) > MAX_PROXY_HEAD:
            raise ProxyError(f"the proxy {proxy.shown} sent an endless CONNECT answer")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if 200 <= code < 300:
        return
    if code == 407:
        hint = (
            "the credentials in the proxy URL were refused"
            if proxy.auth
            else ("put user:password@ in the proxy URL")
        )
        raise ProxyError(f"the proxy {proxy.shown} wants authentication (407): {hint}")
    raise ProxyError(f"the proxy {proxy.shown} refused the tunnel to {where}: {status_line!r}")
