"""Headers every answer gets as it is sent (plain and streamed alike).

``Server`` names the product without versions (a version tells an attacker which known
holes to try). Every ``/api`` answer is ``Cache-Control: no-store`` unless it set its own:
several carry secrets (a revealed key, a new agent key, ``/api/choose`` for the admin), and
none is worth a stale copy in a browser or proxy cache.
"""

from __future__ import annotations

from aiohttp import web

SERVER = "quotaflow"


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
