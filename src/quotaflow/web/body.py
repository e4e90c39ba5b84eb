"""Reading a JSON request body under a size cap."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from quotaflow.errors import BadRequest, PayloadTooLarge


async def read_json(request: web.Request, cap: int) -> Any:
    length = request.content_length
    if length is not None and length > cap:
        raise PayloadTooLarge(f"request body of {length} bytes is over the {cap}-byte limit")
    # read(n) returns what has arrived so far (up to n): a large body takes several reads
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await request.content.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > cap:
        raise PayloadTooLarge(f"request body is over the {cap}-byte limit")
    data = b"".join(chunks)
    if not data:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
