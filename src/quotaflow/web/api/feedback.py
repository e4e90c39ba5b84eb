"""Seed 004 over HTTP: quality feedback (``POST /api/feedback``), the session summary
(``GET /api/session-summary``) and the per key × model statistics (``GET /api/model-stats``).

Feedback needs an agent key or the admin token (like ``/api/use``); the reads are open like
``/api/status``.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from quotaflow.engine.stats import to_json
from quotaflow.errors import BadRequest
from quotaflow.gateway import Gateway
from quotaflow.services.keys import resolve_provider, unknown_provider
from quotaflow.web.auth import require_caller
from quotaflow.web.errors import json_response
from quotaflow.web.state import GATEWAY
from quotaflow.web.validate import get_str, read_object

FEEDBACK_FIELDS = frozenset({"request_id", "provider", "model", "success", "score"})


def _score(body: dict[str, Any]) -> float:
    v = body.get("score")
    if v is None:
        raise BadRequest("'score' is required (a number from 0 to 1)", param="score")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise BadRequest("'score' must be a number from 0 to 1", param="score")
    if not 0.0 <= v <= 1.0:
        raise BadRequest(f"'score' must be from 0 to 1, not {v}", param="score")
    return float(v)


def _success(body: dict[str, Any]) -> bool:
    """Seed 004 passes ``1`` / ``0``; ``true`` / ``false`` are accepted too (default true)."""
    v = body.get("success", True)
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise BadRequest("'success' must be true / false (or 1 / 0)", param="success")


async def feedback(request: web.Request) -> web.Response:
    """``{request_id | provider + model, success, score}`` → the records it changed."""
    gw: Gateway = request.app[GATEWAY]
    require_caller(request)
    body = await read_object(request, FEEDBACK_FIELDS)
    score, success = _score(body), _success(body)
    request_id = get_str(body, "request_id", max_len=128)
    provider = model = None
    if request_id is None:
        name = get_str(body, "provider", max_len=64)
        model = get_str(body, "model", max_len=256)
        if name is None or model is None:
            raise BadRequest(
                "name the request ('request_id', from the x-quotaflow-request-id header) or "
                "the 'provider' and 'model' the feedback is about",
                param="request_id",
            )
        provider = resolve_provider(gw, name)
        if provider is None:
            raise unknown_provider(gw, name)
    changed = await gw.record_feedback(
        score, success=success, request_id=request_id, provider=provider, model=model
    )
    now, hl = gw.clock.now(), gw.settings.learning_half_life_s
    return json_response(
        {
            "success": True,
            "message": f"quality feedback recorded on {len(changed)} key × model record(s)",
            "updated": [to_json(s, now, hl) for s in changed],
            "quality": {s.key_id: s.quality_score for s in changed},  # by key id, as the CLI prints
        }
    )


async def session_summary(request: web.Request) -> web.Response:
    """Seed 004's ``getSessionSummary()`` since the server started."""
    gw: Gateway = request.app[GATEWAY]
    return json_response({"success": True, **gw.session_summary()})


async def model_stats(request: web.Request) -> web.Response:
    """Every key × model record: seed 004's fields plus the learning view."""
    gw: Gateway = request.app[GATEWAY]
    now, hl = gw.clock.now(), gw.settings.learning_half_life_s
    rows = [to_json(s, now, hl) for _, s in sorted(gw.model_stats.items())]
    return json_response({"success": True, "stats": rows})
