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


class FirstByteTimeout(TimeoutError):
    """The provider sent nothing within the attempt's time-to-first-byte budget."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(f"no first byte within {budget_s:g}s")
        self.budget_s = budget_s


def transport_failure(exc: BaseException, timeout_s: float) -> UpstreamFailure:
    if isinstance(exc, FirstByteTimeout):
        return UpstreamFailure(ErrorKind.TIMEOUT, None, str(exc))
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(ErrorKind.TIMEOUT, None, f"no answer within {timeout_s:g}s")
    return UpstreamFailure(ErrorKind.CONNECTION, None, f"{type(exc).__name__}: {exc}"[:300])


# OSError covers refused/reset connections, broken HTTP and unsendable requests
# (UpstreamHTTPError) and TimeoutError.
TRANSPORT_ERRORS = (OSError, asyncio.TimeoutError)


async def send(
    client: Transport, call: UpstreamCall, timeout_s: float, first_byte_s: float | None = None
) -> RawResponse:
    """POST a non-streaming call and read the whole answer within ``timeout_s``, its head
    within ``first_byte_s`` (raises TRANSPORT_ERRORS; :class:`FirstByteTimeout` for the head)."""
    if first_byte_s is None or first_byte_s >= timeout_s:
        resp = await _head(client, call, timeout_s, whole_body=True, budget_s=first_byte_s)
        return RawResponse(resp.status, resp.headers, await resp.read())
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout_s
    resp = await _head(client, call, first_byte_s, whole_body=False, budget_s=first_byte_s)
    try:
        if resp.complete:  # a small answer arrives with its head: no wait, no timer to set
            body = await resp.read()
        else:
            async with asyncio.timeout(max(until - loop.time(), 0.001)):
                body = await resp.read()
    finally:
        resp.release()
    return RawResponse(resp.status, resp.headers, body)


async def open_stream(
    client: Transport, call: UpstreamCall, timeout_s: float, first_byte_s: float | None = None
) -> UpstreamResponse:
    """POST a streaming call and return the open response (the caller releases it)."""
    head_s = timeout_s if first_byte_s is None else min(first_byte_s, timeout_s)
    return await _head(client, call, head_s, whole_body=False, budget_s=first_byte_s)


async def _head(
    client: Transport,
    call: UpstreamCall,
    timeout_s: float,
    *,
    whole_body: bool,
    budget_s: float | None,
) -> UpstreamResponse:
    try:
        return await client.post(
            call.url, call.headers, call.body, timeout_s=timeout_s, whole_body=whole_body
        )
    except TimeoutError:
        if budget_s is not None and budget_s <= timeout_s:
            raise FirstByteTimeout(budget_s) from None
        raise
