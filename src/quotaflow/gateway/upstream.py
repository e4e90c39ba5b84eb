"""The one place quotaflow talks HTTP to providers: a shared :class:`Transport`.

An upstream failure of transport (timeout, refused or reset connection, a broken HTTP
answer) becomes an :class:`~quotaflow.adapters.base.UpstreamFailure` like an HTTP error
does, so the gateway treats every failure the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from quotaflow.adapters.base import UpstreamCall, UpstreamFailure
from quotaflow.httpclient import HttpClient, Transport, UpstreamResponse
from quotaflow.types import ErrorKind


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


def make_client(
    connect_timeout_s: float,
    *,
    proxy: str | None = None,
    kind: Literal["fast", "aiohttp"] = "fast",
    on_request: Callable[[str], None] | None = None,
) -> Transport:
    """The transport ``settings.http_client`` names (``on_request``: a test hook of "fast")."""
    if kind == "aiohttp":
        from quotaflow.httpclient.aiohttp_impl import AiohttpClient  # aiohttp's client, lazily

        return AiohttpClient(connect_timeout_s=connect_timeout_s, proxy=proxy)
    return HttpClient(connect_timeout_s=connect_timeout_s, proxy=proxy, on_request=on_request)


def transport_failure(exc: BaseException, timeout_s: float) -> UpstreamFailure:
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(ErrorKind.TIMEOUT, None, f"no answer within {timeout_s:g}s")
    return UpstreamFailure(ErrorKind.CONNECTION, None, f"{type(exc).__name__}: {exc}"[:300])


# OSError covers refused/reset connections, broken HTTP and unsendable requests
# (UpstreamHTTPError) and TimeoutError.
TRANSPORT_ERRORS = (OSError, asyncio.TimeoutError)


async def send(client: Transport, call: UpstreamCall, timeout_s: float) -> RawResponse:
    """POST a non-streaming call and read the whole answer (raises TRANSPORT_ERRORS)."""
    resp = await client.post(
        call.url, call.headers, call.body, timeout_s=timeout_s, whole_body=True
    )
    return RawResponse(resp.status, resp.headers, await resp.read())


async def open_stream(client: Transport, call: UpstreamCall, timeout_s: float) -> UpstreamResponse:
    """POST a streaming call and return the open response (the caller releases it)."""
    return await client.post(call.url, call.headers, call.body, timeout_s=timeout_s)
