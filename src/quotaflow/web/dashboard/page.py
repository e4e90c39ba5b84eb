"""The dashboard's page and assets: ``GET /`` and ``GET /static/{name}``, from the package.

Only plain file names directly inside ``web/static`` are served (no ``/``, no ``..``, no
hidden files), with their content type; nothing is fetched from elsewhere (the page works
offline). Assets are revalidated on every load (``no-cache`` + ``ETag``), so an upgraded
package is never shown half old. Every answer carries a Content-Security-Policy that allows
only this origin's scripts and styles: even a name that slipped through escaping could not
run script.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from quotaflow.errors import NotFound

STATIC_DIR = Path(__file__).parent.parent / "static"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_asset(name: str) -> Asset:
    """A file of the static folder by bare name; :class:`NotFound` for anything else."""
    suffix = Path(name).suffix.lower()
    if not SAFE_NAME.match(name) or ".." in name or suffix not in CONTENT_TYPES:
        raise NotFound(f"no such dashboard file: {name!r}", code="not_found")
    path = STATIC_DIR / name
    if path.parent != STATIC_DIR or not path.is_file():
        raise NotFound(f"no such dashboard file: {name!r}", code="not_found")
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, CONTENT_TYPES[suffix], etag)


def asset_response(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


async def index(request: web.Request) -> web.Response:
    return asset_response(request, load_asset("index.html"))


async def static_file(request: web.Request) -> web.Response:
    return asset_response(request, load_asset(request.match_info["name"]))
