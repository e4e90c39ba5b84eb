"""The one place quotaflow talks HTTP to providers: a shared aiohttp session.

An upstream failure of transport (timeout, refused or reset connection) becomes an
:class:`~quotaflow.adapters.base.UpstreamFailure` like an HTTP error does, so the gateway
treats every failure the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from quotaflow.adapters.base import UpstreamCall, UpstreamFailure
from quotaflow.types import ErrorKind


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


def make_session(connect_timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


def transport_failure(exc: BaseException, timeout_s: float) -> UpstreamFailure:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamFailure(ErrorKind.TIMEOUT, None, f"no answer within {timeout_s:g}s")
    return UpstreamFailure(ErrorKind.CONNECTION, None, f"{type(exc).__name__}: {exc}"[:300])


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def send(session: aiohttp.ClientSession, call: UpstreamCall, timeout_s: float) -> RawResponse:
    """POST a non-streaming call and read the whole answer (raises TRANSPORT_ERRORS)."""
    async with session.post(
        call.url,
        data=call.body,
        headers=call.headers,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as resp:
        body = await resp.read()
        return RawResponse(resp.status, resp.headers, body)


async def open_stream(
    session: aiohttp.ClientSession, call: UpstreamCall, timeout_s: float, read_timeout_s: float
) -> aiohttp.ClientResponse:
    """POST a streaming call and return the open response (the caller releases it)."""
    return await session.post(
        call.url,
        data=call.body,
        headers=call.headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=read_timeout_s, connect=timeout_s),
    )
