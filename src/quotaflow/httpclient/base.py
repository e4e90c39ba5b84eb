"""The Transport seam: what the gateway needs from an HTTP client, and nothing more.

Two implementations satisfy it and run the same test suite: :class:`~.client.HttpClient`
(the default, ``settings.http_client: fast``: httptools, measured at a fraction of the CPU)
and :class:`~.aiohttp_impl.AiohttpClient` (``aiohttp``: aiohttp's client, for networks where
its wider field use is worth the CPU). Failures are ``OSError`` (``ConnectionError``
subclasses of :class:`~.connection.UpstreamHTTPError`) or ``TimeoutError`` in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class UpstreamResponse(Protocol):
    """Status and headers at once; the body read whole or piece by piece."""

    status: int

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    @property
    def complete(self) -> bool:
        """The whole body has arrived."""
        ...

    async def read(self, timeout_s: float | None = None) -> bytes:
        """The whole (remaining) body."""
        ...

    async def readany(self, timeout_s: float | None = None) -> bytes:
        """What has arrived (waiting for something); ``b""`` at the end of the body."""
        ...

    def release(self) -> None:
        """Done with it: the connection is reused if the body was read to its end."""
        ...

    def close(self) -> None:
        """Drop it and its connection (a stream given up half-way)."""
        ...


class Transport(Protocol):
    """Sends a provider call; owns its connections."""

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout_s: float | None,
        whole_body: bool = False,
    ) -> UpstreamResponse:
        """Send and return the response with its head read.

        ``timeout_s`` bounds connecting, sending and the head — and, with ``whole_body``,
        the rest of the body too (then ``read()`` fails with TimeoutError at the deadline).
        """
        ...

    async def close(self) -> None: ...
