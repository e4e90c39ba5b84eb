"""The one exception tree of quotaflow.

::

    QuotaflowError                 status  OpenAI type / code
    ├── ConfigError                  —     (refused at start; names the field)
    ├── StorageUnusable              —     (refused at start; names the file and what to do)
    ├── BadRequest                  400    invalid_request_error
    │   ├── PayloadTooLarge         413    invalid_request_error / payload_too_large
    │   ├── Conflict                409    invalid_request_error / conflict (the name is taken; says how to change it)
    │   └── UnsupportedByProtocol   400    invalid_request_error / unsupported_by_protocol
    ├── Unauthorized                401    authentication_error / invalid_api_key
    ├── Forbidden                   403    permission_error
    ├── NotFound                    404    invalid_request_error / model_not_found
    ├── QuotaExhausted              429    rate_limit_exceeded / quota_exhausted (says which limits, when the first frees)
    ├── UpstreamError               502    upstream_error (every attempt failed; carries the attempts)
    │   └── KeyRejected             502    upstream_error / upstream_key_invalid (the provider rejected the keys)
    ├── ClientGone                  499    client_gone (the client left before its answer: nothing more is sent upstream)
    └── Unavailable                 503    service_unavailable

Each error knows its HTTP status and how to render itself; the web layer translates it
in one place into OpenAI's error JSON on ``/v1`` or the ``success: false`` envelope on ``/api``.
"""

from __future__ import annotations

from typing import Any


class QuotaflowError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    observed: bool = False  # the request's access line and metrics already tell of it

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.details = details or {}

    def to_openai(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if self.details:
            body["quotaflow"] = self.details
        return {"error": body}


class ConfigError(QuotaflowError):
    """The configuration is invalid; the message names the field and the reason."""


class StorageUnusable(QuotaflowError):
    """A file of the data folder (the SQLite ledger, the folder's lock) cannot be used:
    damaged, read-only, or on a full disk. The message names the file and what to do."""


class BadRequest(QuotaflowError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(BadRequest):
    status = 413
    code = "payload_too_large"


class Conflict(BadRequest):
    """The thing to create exists already (an agent's name): nothing was changed, and the
    message says how to change the existing one instead."""

    status = 409
    code = "conflict"


class UnsupportedByProtocol(BadRequest):
    """A valid OpenAI request that one wire protocol cannot express (Anthropic ``n > 1``,
    audio input…). Raised by adapters; the gateway skips to a deployment of another
    protocol, and returns it to the client only when no deployment can serve the request."""

    code = "unsupported_by_protocol"


class Unauthorized(QuotaflowError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(QuotaflowError):
    status = 403
    type = "permission_error"


class NotFound(QuotaflowError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class QuotaExhausted(QuotaflowError):
    """Every candidate is out of headroom and none frees within the configured wait."""

    status = 429
    type = "rate_limit_exceeded"
    code = "quota_exhausted"


class UpstreamError(QuotaflowError):
    """Every attempt failed upstream."""

    status = 502
    type = "upstream_error"
    code = "all_attempts_failed"


class KeyRejected(UpstreamError):
    """The provider rejected every key that could serve (401/403): the key is invalid, not
    out of quota, so retrying will not help until an operator fixes or replaces it."""

    code = "upstream_key_invalid"


class ClientGone(QuotaflowError):
    """The client closed its connection before it was answered: the request is not sent
    upstream after that (nor charged), and its access line says so. Nobody reads the
    answer; 499 is the status access logs give a client that went away."""

    status = 499
    type = "client_gone"
    code = "client_gone"


class Unavailable(QuotaflowError):
    status = 503
    type = "service_unavailable"
