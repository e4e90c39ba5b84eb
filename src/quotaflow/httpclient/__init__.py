"""quotaflow's own HTTP/1.1 client for provider calls (see :mod:`.client`)."""

from quotaflow.httpclient.client import HttpClient, target_of
from quotaflow.httpclient.connection import (
    BodyTooLarge,
    InvalidRequest,
    Response,
    ServerDisconnected,
    UpstreamHTTPError,
)

__all__ = [
    "BodyTooLarge",
    "HttpClient",
    "InvalidRequest",
    "Response",
    "ServerDisconnected",
    "UpstreamHTTPError",
    "target_of",
]
