"""Typed keys of values stored on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from quotaflow.gateway import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
