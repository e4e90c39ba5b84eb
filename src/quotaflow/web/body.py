"""Reading a JSON request body under a size cap."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from quotaflow.errors import BadRequest, PayloadTooLarge


async def read_capped(request: web.Request, cap: int) -> bytes:
    """The whole body (decompressed when it says it is), refused once it passes ``cap`` bytes.

    One ``read(n)`` returns only what has arrived so far, so a body that comes in pieces is
    read until its end; a chunked upload of any size stops costing memory at the cap."""
    length = request.content_length
    if length is not None and length > cap:
        raise PayloadTooLarge(f"request body of {length} bytes is over the {cap}-byte limit")
    parts: list[bytes] = []
    size = 0
    # A plain body of a stated length is complete at that length: no read to find its end.
    whole = None if "Content-Encoding" in request.headers else length
    try:
        while size <= cap:
            part = await request.content.read(cap + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
            if size == whole:
                break
    except web.RequestPayloadError as exc:
        # Nothing more of this body can be read: marked ended, aiohttp does not try to drain
        # it after the answer (which would log the same error again with a traceback).
        request.content.feed_eof()
        raise BadRequest(f"the request body could not be read: {_reason(request, exc)}") from None
    if size > cap:
        raise PayloadTooLarge(f"request body is over the {cap}-byte limit")
    return b"".join(parts)


def _reason(request: web.Request, exc: web.RequestPayloadError) -> str:
    # aiohttp decompresses while reading; its message is "400, message: …" over two lines.
    detail = " ".join(str(exc).split()).removeprefix("400, message: ")
    encoding = request.headers.get("Content-Encoding")
    if encoding:
        return f"it is not valid {encoding}-compressed data ({detail})"
    return detail


async def read_json(request: web.Request, cap: int) -> Any:
    data = await read_capped(request, cap)
    if not data:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
