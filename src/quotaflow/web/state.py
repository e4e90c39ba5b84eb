"""Typed keys of values stored on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from quotaflow.gateway import Gateway
from quotaflow.runtime import Runtime

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
