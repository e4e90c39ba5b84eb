"""Typed keys of values stored on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from quotaflow.gateway import Gateway
from quotaflow.management import Management

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
MANAGEMENT: web.AppKey[Management] = web.AppKey("management", Management)
