"""HTTP/1.1 written by hand over a socket: bodies in slow pieces, chunked uploads, broken
encodings and half-sent heads, which no client library sends on purpose."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit


def connect(url: str, timeout: float = 30.0) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout)


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (Content-Length or until close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        if not got:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += got
    raw_head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        got = sock.recv(65536)
        if not got:
            break
        body += got
    return int(status_line.split()[1]), headers, body


def post_pieces(
    url: str, path: str, pieces: Iterable[bytes], headers: dict[str, str], pause_s: float = 0.0
) -> tuple[int, dict[str, Any]]:
    """POST a body sent piece by piece (pausing between pieces), then read the answer; the
    server may answer (and stop reading) before the body is all sent."""
    with connect(url) as sock:
        sock.sendall(head(path, headers))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in pieces:
                sock.sendall(piece)
                if pause_s:
                    time.sleep(pause_s)
        status, _, body = read_response(sock)
    return status, json.loads(body)


def chunked(body: bytes, size: int) -> list[bytes]:
    """``body`` as HTTP/1.1 chunks of ``size`` bytes, with the closing empty chunk."""
    out = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return [*out, b"0\r\n\r\n"]
