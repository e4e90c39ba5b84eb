"""Validating ``/api`` bodies and queries: every bad value is a 400 naming the field.

Each endpoint reads its body with the fields it takes (the seeds' fields among them, e.g.
``"reason": null`` on ``/api/use``): an unknown field is a 400 naming it and the known ones,
never silently dropped (a caller's ``limits`` would otherwise add a key without its cap).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

from aiohttp import web

from quotaflow.errors import BadRequest
from quotaflow.gateway import Gateway
from quotaflow.services.keys import resolve_provider, unknown_provider
from quotaflow.web.body import read_json
from quotaflow.web.state import GATEWAY

NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


async def read_object(
    request: web.Request, fields: Collection[str], *, optional: bool = False
) -> dict[str, Any]:
    """The JSON object in the body (size-capped by ``server.api_max_body_bytes``), holding
    only ``fields`` (the ones the endpoint takes; any other is refused).

    ``optional``: an empty body reads as ``{}``."""
    cap = request.app[GATEWAY].config.server.api_max_body_bytes
    if optional and not request.body_exists:
        return {}
    body = await read_json(request, cap)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    refuse_unknown(request.path, body, fields)
    return body


def refuse_unknown(path: str, body: dict[str, Any], fields: Collection[str]) -> None:
    """A 400 naming the fields of ``body`` that ``path`` does not take, and those it takes."""
    unknown = sorted(k for k in body if k not in fields)
    if not unknown:
        return
    known = sorted(fields)
    shown = [n[:MAX_NAME_SHOWN] for n in unknown[:MAX_UNKNOWN_SHOWN]]
    more = f" and {len(unknown) - len(shown)} more" if len(unknown) > len(shown) else ""
    takes = f"takes {quoted(known)}" if known else "takes no field"
    raise BadRequest(
        f"unknown field{'s' if len(unknown) > 1 else ''} {quoted(shown)}{more}: {path} {takes}",
        param=shown[0],
        code="unknown_field",
        details={"unknown_fields": shown, "known_fields": known},
    )


MAX_UNKNOWN_SHOWN = 10  # an answer never echoes a whole hostile body
MAX_NAME_SHOWN = 64


def quoted(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def get_int(
    body: dict[str, Any],
    name: str,
    *,
    lo: int,
    hi: int,
    default: int | None = None,
    required: bool = False,
) -> int:
    v = body.get(name)
    if v is None:
        if required or default is None:
            raise BadRequest(f"'{name}' is required (an integer from {lo} to {hi})", param=name)
        return default
    if isinstance(v, float) and v.is_integer() and math.isfinite(v):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"'{name}' must be an integer, not {type(v).__name__}", param=name)
    if not lo <= v <= hi:
        raise BadRequest(f"'{name}' must be from {lo} to {hi}, not {v}", param=name)
    return v


def get_str(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    max_len: int = 256,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    v = body.get(name)
    if v is None:
        if required:
            raise BadRequest(f"'{name}' is required (a string)", param=name)
        return None
    if not isinstance(v, str):
        raise BadRequest(f"'{name}' must be a string, not {type(v).__name__}", param=name)
    if not v or len(v) > max_len:
        raise BadRequest(f"'{name}' must have 1 to {max_len} characters", param=name)
    if pattern is not None and not pattern.match(v):
        raise BadRequest(f"'{name}' must match {pattern.pattern}", param=name)
    return v


def need_str(body: dict[str, Any], name: str, **kw: Any) -> str:
    v = get_str(body, name, required=True, **kw)
    assert v is not None
    return v


def get_bool(body: dict[str, Any], name: str, default: bool) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BadRequest(f"'{name}' must be true or false", param=name)
    return v


def query_int(request: web.Request, name: str, *, default: int, lo: int, hi: int) -> int:
    raw = request.query.getall(name, [])
    if not raw:
        return default
    if len(raw) > 1:
        raise BadRequest(f"query parameter '{name}' is given {len(raw)} times", param=name)
    try:
        v = int(raw[0].strip())
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer", param=name) from None
    if not lo <= v <= hi:
        raise BadRequest(f"query parameter '{name}' must be from {lo} to {hi}", param=name)
    return v


def path_name(request: web.Request, name: str) -> str:
    v = request.match_info.get(name, "")
    if not NAME.match(v):
        raise BadRequest(f"'{name}' must be 1 to 64 letters, digits or _.@-", param=name)
    return v


def provider_arg(gw: Gateway, name: str) -> str:
    """The configured provider a request names (aliases allowed), else a 400."""
    resolved = resolve_provider(gw, name)
    if resolved is None:
        raise unknown_provider(gw, name)
    return resolved
