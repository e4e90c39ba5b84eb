"""What the HTTP client raises when a provider breaks the exchange: :class:`ConnectionError`
subclasses (so ``OSError``), the family the gateway turns into fallbacks."""

from __future__ import annotations


class UpstreamHTTPError(ConnectionError):
    """The provider broke the HTTP exchange (closed early, sent something that isn't HTTP)."""


class InvalidRequest(UpstreamHTTPError):
    """The request can't be sent as configured (a URL or header value HTTP doesn't allow)."""


class ServerDisconnected(UpstreamHTTPError):
    """The connection closed before the response was complete."""


class BodyTooLarge(UpstreamHTTPError):
    """The response body went over the client's cap."""
