"""Host-header check: a server bound to loopback answers only to loopback names.

This defeats DNS rebinding (a web page whose domain suddenly resolves to 127.0.0.1):
the browser still sends that domain in ``Host``, so the request is refused (421).
Names in ``server.allowed_hosts`` are accepted too; a server bound beyond loopback
checks only when that list is set.
"""

from __future__ import annotations

from aiohttp import web

from quotaflow.errors import QuotaflowError
from quotaflow.services.access import is_loopback
from quotaflow.web.state import RUNTIME


class MisdirectedRequest(QuotaflowError):
    status = 421
    type = "invalid_request_error"
    code = "host_not_allowed"


def host_name(host: str) -> str:
    """``[::1]:5050`` → ``::1``; ``localhost:5050`` → ``localhost``."""
    h = host.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h


def check_host(request: web.Request) -> None:
    """Raise :class:`MisdirectedRequest` when the ``Host`` header is not served here."""
    mg = request.app[RUNTIME]
    allowed = mg.gateway.config.server.allowed_hosts
    if is_loopback(mg.bind_host) or allowed:
        name = host_name(request.headers.get("host", "") or "localhost")
        ok = name in allowed or (
            is_loopback(mg.bind_host) and (is_loopback(name) or name == mg.bind_host)
        )
        if not ok:
            raise MisdirectedRequest(
                f"Host {name!r} is not served here (this server answers to loopback names"
                + (f" and {', '.join(allowed)}" if allowed else "")
                + "; add it to server.allowed_hosts)"
            )
