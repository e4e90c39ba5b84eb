"""``GET /metrics``: Prometheus exposition of the gateway's metrics.

Open on a loopback bind; on an exposed bind it needs the admin token or the token of
``QUOTAFLOW_METRICS_TOKEN`` (for a scraper that must not hold admin rights).
"""

from __future__ import annotations

import hmac
import os

from aiohttp import web

from quotaflow.errors import NotFound
from quotaflow.gateway import Gateway
from quotaflow.observability.metrics import CONTENT_TYPE, Metrics
from quotaflow.services.access import is_loopback
from quotaflow.web.auth import presented_token, require_admin
from quotaflow.web.state import RUNTIME

METRICS_TOKEN_ENV = "QUOTAFLOW_METRICS_TOKEN"


def authorize(request: web.Request) -> None:
    """Loopback binds are open; else the metrics token or the admin token (401 / 403)."""
    mg = request.app[RUNTIME]
    if is_loopback(mg.bind_host):
        return
    want = os.environ.get(METRICS_TOKEN_ENV)
    token = presented_token(request)
    if want and token is not None and hmac.compare_digest(token.encode(), want.encode()):
        return
    require_admin(request)


async def refresh_gauges(gw: Gateway, m: Metrics) -> None:
    """Headroom, in-flight streams and the ledger queue, read when scraped."""
    now = gw.clock.now()
    usages = await gw.counters.snapshot(gw.all_limits(), now)
    m.set_headroom(
        (
            u.limit.scope.removeprefix("key:") if u.limit.scope.startswith("key:") else "",
            lim_id,
            max(1.0 - u.used / u.limit.amount, 0.0) if u.limit.amount > 0 else 0.0,
        )
        for lim_id, u in usages.items()
    )
    m.ledger_queue.set(gw.ledger.queue_depth)


async def metrics(request: web.Request) -> web.Response:
    authorize(request)
    gw = request.app[RUNTIME].gateway
    m = gw.observer.metrics
    if m is None:
        raise NotFound("metrics are off (QUOTAFLOW_METRICS=off)")
    await refresh_gauges(gw, m)
    return web.Response(body=m.render(), headers={"content-type": CONTENT_TYPE})
