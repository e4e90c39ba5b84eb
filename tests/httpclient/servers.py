"""Local servers the HTTP client tests talk to: raw HTTP, a forwarding proxy, a local CA."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """A TCP server whose handler writes raw bytes; yields its base URL."""
    conns: list[asyncio.StreamWriter] = []

    async def wrapped(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conns.append(w)
        try:
            await handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(wrapped, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()


async def read_request(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await r.readexactly(length)


def answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n" + "".join(
        f"{h}\r\n" for h in extra
    )
    return head.encode() + b"\r\n" + body


@dataclass
class ProxyLog:
    """What the proxy saw: request lines, and the Proxy-Authorization each came with."""

    lines: list[str] = field(default_factory=list)
    auths: list[str | None] = field(default_factory=list)


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except ConnectionError:
        pass
    finally:
        w.close()


@asynccontextmanager
async def forward_proxy(
    *, user: str | None = None, password: str | None = None, refuse: str | None = None
) -> AsyncIterator[tuple[str, ProxyLog]]:
    """An HTTP proxy: CONNECT tunnels and absolute-form requests, optionally behind Basic
    auth (407 without it) or refusing everything with ``refuse`` ("403 Forbidden")."""
    log = ProxyLog()
    wanted = None
    if user is not None:
        wanted = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1")
        first, *rest = head.split("\r\n")
        auth = next(
            (ln.split(":", 1)[1].strip() for ln in rest if ln.lower().startswith("proxy-auth")),
            None,
        )
        log.lines.append(first)
        log.auths.append(auth)
        if refuse is not None or (wanted is not None and auth != wanted):
            status = refuse or "407 Proxy Authentication Required"
            w.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
            await w.drain()
            w.close()
            return
        method, target, _ = first.split(" ")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            ur, uw = await asyncio.open_connection(host.strip("[]"), int(port))
            w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await w.drain()
        else:  # absolute form: forward the request (origin form) and what follows
            rest_of_url = target.split("://", 1)[1]
            hostport, _, path = rest_of_url.partition("/")
            host, _, port = hostport.rpartition(":")
            ur, uw = await asyncio.open_connection(host, int(port))
            kept = [ln for ln in rest if ln and not ln.lower().startswith("proxy-")]
            uw.write(f"{method} /{path} HTTP/1.1\r\n".encode() + "\r\n".join(kept).encode())
            uw.write(b"\r\n\r\n")
        await asyncio.gather(_pipe(r, uw), _pipe(ur, w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    auth = "" if user is None else f"{user}:{password}@"
    try:
        yield f"http://{auth}127.0.0.1:{port}", log
    finally:
        server.close()


@dataclass
class LocalCA:
    """A certificate authority made for one test, and a server certificate it signed."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_pem, self.key_pem)
        return ctx


def make_ca(tmp: Path, server_name: str = "localhost") -> LocalCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quotaflow test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = LocalCA(tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    out.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key_pem.write_bytes(pem_key(key))
    return out
