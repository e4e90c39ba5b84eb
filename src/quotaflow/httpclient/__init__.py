"""HTTP/1.1 to providers: the :class:`Transport` seam, quotaflow's own client as its default
(:mod:`.client`) and aiohttp's as the alternative (:mod:`.aiohttp_impl`, imported on demand)."""

from quotaflow.httpclient.base import Transport, UpstreamResponse
from quotaflow.httpclient.client import HttpClient, target_of
from quotaflow.httpclient.connect import ProxyError
from quotaflow.httpclient.errors import (
    BodyTooLarge,
    InvalidRequest,
    ServerDisconnected,
    UpstreamHTTPError,
)
from quotaflow.httpclient.response import Response

__all__ = [
    "BodyTooLarge",
    "HttpClient",
    "InvalidRequest",
    "ProxyError",
    "Response",
    "ServerDisconnected",
    "Transport",
    "UpstreamHTTPError",
    "UpstreamResponse",
    "target_of",
]
