"""How the server treats client connections: bounded idle time, quiet protocol errors.

aiohttp closes a connection that waits for a request head past its keep-alive timeout (its
default is an hour), counted from the connection's start and from the end of each response:
so one bound covers both a client that never finishes a request head and an idle keep-alive
connection. Malformed HTTP is answered 400 by aiohttp itself; its log record carries a
traceback per request, which :class:`OneLineProtocolErrors` reduces to one line.

aiohttp does not cancel a handler whose client disconnects; :func:`still_connected` lets
the gateway ask, so that a request whose client left is not sent upstream after that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from quotaflow.config.model import Config

SERVER_LOGGER = "aiohttp.server"


def runner_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` that bound what an idle client can hold."""
    return {"keepalive_timeout": config.server.idle_timeout_s}


def still_connected(request: web.Request) -> Callable[[], bool]:
    """A question for the gateway: is the client of ``request`` still connected (its
    transport open)?"""

    def connected() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return connected


class OneLineProtocolErrors(logging.Filter):
    """A request aiohttp could not parse is the client's fault: one line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            said = record.getMessage()
            record.msg, record.args = "%s: %s", (said, " ".join(str(exc.message).split()))
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_protocol_errors() -> None:
    """Install :class:`OneLineProtocolErrors` on aiohttp's server logger (once)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, OneLineProtocolErrors) for f in logger.filters):
        logger.addFilter(OneLineProtocolErrors())
