"""JSON only: a POST or DELETE with a body must say ``Content-Type: application/json``.

HTML forms can only send form or plain-text bodies, so this refuses cross-site form
posts (415). A bodyless POST without a content type (``curl -X POST …/api/clear_forced``)
is accepted.
"""

from __future__ import annotations

from aiohttp import web

from quotaflow.errors import BadRequest

CHECKED = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


def is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def check_content_type(request: web.Request) -> None:
    """Raise :class:`UnsupportedMediaType` for a body that does not say it is JSON."""
    if request.method in CHECKED and request.path.startswith(("/api/", "/v1/")):
        declared = request.headers.get("content-type")
        if (declared is not None or request.body_exists) and not is_json(declared or ""):
            raise UnsupportedMediaType(
                f"send JSON with 'Content-Type: application/json' (got {declared or 'none'!r})"
            )
