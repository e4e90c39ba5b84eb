"""The control API under ``/_fake/`` that tests use to steer a running fake provider.

* ``GET /_fake/stats`` — request/error/token counters, overall, by key and by model.
* ``POST /_fake/keys`` ``{"key", "quota_tokens", "invalid"}`` — add or update a key
  (the server then accepts known keys only). ``used_tokens`` may be set too.
* ``POST /_fake/faults`` — queue a fault (see :mod:`.faults`); ``GET`` lists them;
  ``DELETE`` clears them.
* ``POST /_fake/reset`` — clear stats, faults, rate windows and key usage.
* ``POST /_fake/config`` ``{"latency_ms", "chunk_delay_ms", "completion_tokens", "rpm", "tpm"}``
  — change knobs live; answers with the whole config.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from quotaflow.fake_provider.faults import FaultSpecError, fault_from_json
from quotaflow.fake_provider.protocol import Handler
from quotaflow.fake_provider.state import FakeProviderState

# knob → (integers only, may be null, minimum)
KNOBS: dict[str, tuple[bool, bool, int]] = {
    "latency_ms": (False, False, 0),
    "chunk_delay_ms": (False, False, 0),
    "completion_tokens": (True, False, 0),
    "rpm": (True, True, 1),
    "tpm": (True, True, 1),
}


KEY_FIELDS = ("key", "quota_tokens", "invalid", "used_tokens")


class ControlError(ValueError):
    """A control request that cannot be applied (answered with 400)."""


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


def _config_json(state: FakeProviderState) -> dict[str, Any]:
    config = asdict(state.config)
    config.pop("keys")
    return config


def _optional_int(data: dict[str, Any], name: str, default: int | None) -> int | None:
    value = data.get(name, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ControlError(f"{name!r} must be a non-negative integer or null")
    return value


def make_control_routes(state: FakeProviderState) -> list[web.RouteDef]:
    """The ``/_fake/`` routes acting on ``state``."""

    async def stats(request: web.Request) -> web.Response:
        return _json(state.stats_json())

    async def set_key(request: web.Request) -> web.Response:
        data = await _body(request)
        unknown = sorted(set(data) - set(KEY_FIELDS))
        if unknown:
            raise ControlError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(KEY_FIELDS)}"
            )
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise ControlError("'key' must be a non-empty string")
        existing = (state.config.keys or {}).get(key)
        quota = _optional_int(data, "quota_tokens", existing.quota_tokens if existing else None)
        invalid = data.get("invalid", existing.invalid if existing else False)
        if not isinstance(invalid, bool):
            raise ControlError("'invalid' must be a boolean")
        used = _optional_int(data, "used_tokens", None)
        ks = state.set_key(key, quota, invalid)
        if used is not None:
            ks.used_tokens = used
        return _json({"key": key, **asdict(ks)})

    async def add_fault(request: web.Request) -> web.Response:
        try:
            fault = fault_from_json(await _body(request))
        except FaultSpecError as exc:
            raise ControlError(str(exc)) from None
        state.faults.add(fault)
        return _json({"queued": fault.to_json(), "faults": len(state.faults.faults)})

    async def list_faults(request: web.Request) -> web.Response:
        return _json({"faults": [f.to_json() for f in state.faults.faults]})

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return _json({"faults": 0})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return _json({"reset": True})

    async def set_config(request: web.Request) -> web.Response:
        data = await _body(request)
        for name, value in data.items():
            if name not in KNOBS:
                raise ControlError(f"unknown knob {name!r}; known: {', '.join(KNOBS)}")
            integer, nullable, minimum = KNOBS[name]
            if value is None and nullable:
                continue
            number = isinstance(value, int) or (isinstance(value, float) and not integer)
            if not number or isinstance(value, bool) or value < minimum:
                kind = "an integer" if integer else "a number"
                null = " or null" if nullable else ""
                raise ControlError(f"{name!r} must be {kind} >= {minimum}{null}")
        for name, value in data.items():
            setattr(state.config, name, value)
        return _json(_config_json(state))

    async def get_config(request: web.Request) -> web.Response:
        return _json(_config_json(state))

    return [
        web.get("/_fake/stats", _guarded(stats)),
        web.post("/_fake/keys", _guarded(set_key)),
        web.post("/_fake/faults", _guarded(add_fault)),
        web.get("/_fake/faults", _guarded(list_faults)),
        web.delete("/_fake/faults", _guarded(clear_faults)),
        web.post("/_fake/reset", _guarded(reset)),
        web.post("/_fake/config", _guarded(set_config)),
        web.get("/_fake/config", _guarded(get_config)),
    ]


def _guarded(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Handler:
    """``handler`` with :class:`ControlError` turned into a 400 ``{"error": message}``."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ControlError as exc:
            return _json({"error": str(exc)}, status=400)

    return guarded
