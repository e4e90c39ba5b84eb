"""``GET /api/dashboard`` and the key switches the dashboard offers
(``POST /api/keys/{key_id}/enable`` and ``…/disable``).

Who may look: the admin (token, or every local caller in ``--trust-local`` mode); with
``server.dashboard_read_only_on_loopback: true`` also anyone connecting from loopback, who
sees the same snapshot but whose actions still need the token.
"""

from __future__ import annotations

from aiohttp import web

from quotaflow.errors import BadRequest
from quotaflow.runtime import Runtime
from quotaflow.services.keys import set_key_state
from quotaflow.web.auth import require_admin, viewer_of
from quotaflow.web.dashboard.hub import HUB
from quotaflow.web.errors import json_response
from quotaflow.web.state import RUNTIME
from quotaflow.web.validate import path_name


async def snapshot(request: web.Request) -> web.Response:
    viewer = viewer_of(request)
    snap = await request.app[HUB].current()
    return json_response({"success": True, "viewer": viewer, **snap})


def _known_key(mg: Runtime, request: web.Request) -> str:
    key_id = path_name(request, "key_id")
    if key_id not in mg.gateway.keys:
        raise BadRequest(f"unknown key_id {key_id!r}", code="unknown_key")
    return key_id


async def enable_key(request: web.Request) -> web.Response:
    """Route to the key again: clears a disable, an auth failure, a cooldown, an open circuit.
    Kept in the data folder, like ``quotaflow keys enable``."""
    mg = request.app[RUNTIME]
    require_admin(request)
    key_id = _known_key(mg, request)
    await set_key_state(mg.gateway, key_id, True)
    return json_response({"success": True, "message": f"Key {key_id} enabled", "key_id": key_id})


async def disable_key(request: web.Request) -> web.Response:
    """Stop routing to the key until it is enabled again (kept across a restart)."""
    mg = request.app[RUNTIME]
    require_admin(request)
    key_id = _known_key(mg, request)
    await set_key_state(mg.gateway, key_id, False)
    return json_response({"success": True, "message": f"Key {key_id} disabled", "key_id": key_id})
