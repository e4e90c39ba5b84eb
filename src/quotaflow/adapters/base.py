"""What every wire-protocol adapter provides.

Clients always speak OpenAI chat completions to quotaflow; an adapter translates one
request to its provider's protocol (:meth:`Adapter.build_request`), the answer back
(:meth:`Adapter.parse_response`, :meth:`Adapter.stream_translator`), and classifies
failures into the :class:`ErrorKind` the router acts on (:meth:`Adapter.classify_error`).
Translation is pure; the gateway does the I/O once, for every protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson

from quotaflow.types import ErrorKind as ErrorKind  # re-exported for adapters
from quotaflow.types import RateInfo as RateInfo
from quotaflow.types import Usage

Headers = Mapping[str, str]


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class UpstreamCall:
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool


@dataclass(slots=True)
class ChatResult:
    """A complete answer, already in OpenAI's ``chat.completion`` shape."""

    body: dict[str, Any]
    usage: Usage
    finish_reason: str | None = None


@dataclass(slots=True)
class UpstreamFailure:
    kind: ErrorKind
    status: int | None
    message: str
    retry_after_s: float | None = None
    body: dict[str, Any] | None = None  # OpenAI-shaped error to hand back for client errors
    provider_code: str | None = None
    # For QUOTA_EXHAUSTED: the provider's own quota window when it names one ("day" for
    # Gemini's per-day quotas, reset at midnight in ``quota_tz``); None → the key's limits.
    quota_window: str | None = None
    quota_tz: str | None = None


def redirect_failure(status: int, headers: Headers) -> UpstreamFailure | None:
    """A 3xx from a provider API is a misconfigured ``base_url`` (or a proxy in the way),
    never an answer for the client: a server error of that key, naming where it pointed."""
    if not 300 <= status < 400:
        return None
    location = headers.get("location") or headers.get("Location") or "no Location header"
    return UpstreamFailure(
        ErrorKind.SERVER_ERROR,
        status,
        f"the provider answered with a redirect (HTTP {status} to {location}); "
        "check the provider's base_url",
    )


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class SSEEvent:
    event: str | None
    data: str


@dataclass(slots=True)
class StreamState:
    """What a stream translator learned so far; the gateway bills from it."""

    usage: Usage | None = None  # provider-reported (cumulative counts, latest wins)
    text: list[str] = field(default_factory=list)  # produced text pieces, for estimates
    finish_reason: str | None = None
    done: bool = False  # the provider's terminal event arrived
    error: UpstreamFailure | None = None  # an error event arrived mid-stream
    chunks: int = 0


class StreamTranslator(Protocol):
    state: StreamState

    def feed(self, event: SSEEvent) -> list[bytes]:
        """OpenAI SSE frames (``b"data: {...}\\n\\n"``) to send for one upstream event.

        Never emits ``data: [DONE]``: the gateway sends it after the ledger commit.
        """
        ...


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class CallTarget:
    """Where and how an attempt goes: the provider's base URL, the upstream model, the key."""

    base_url: str
    model: str
    secret: str
    headers: Mapping[str, str] = field(default_factory=dict)


class Adapter(Protocol):
    protocol: ClassVar[str]

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        """The upstream request for an OpenAI ``body`` (quotaflow's own fields already removed).

        ``max_tokens`` is the completion cap to send (the client's, or the reservation's clamp).
        """
        ...

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        """A 2xx body → OpenAI ``chat.completion``; raises :class:`MalformedResponse` if unreadable.

        ``created`` is the gateway's timestamp for answers whose provider sends none.
        """
        ...

    def stream_translator(
        self, model: str, include_usage: bool, created: int = 0
    ) -> StreamTranslator:
        """A translator for one stream; ``created`` stamps chunks whose provider sends none."""
        ...

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure: ...

    def rate_info(self, headers: Headers) -> RateInfo | None: ...


class MalformedResponse(Exception):
    """The provider answered 2xx with a body that cannot be read."""


def load_json_object(body: bytes) -> dict[str, Any]:
    """A provider's 2xx body as a JSON object; :class:`MalformedResponse` if it is not one."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedResponse("the provider's answer is not valid JSON") from None
    if not isinstance(obj, dict):
        raise MalformedResponse("the provider's answer is not a JSON object")
    return obj


def retry_after_seconds(headers: Headers) -> float | None:
    """``retry-after-ms``, then ``retry-after`` (seconds; an HTTP date is ignored)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra:
        try:
            return max(float(ra), 0.0)
        except ValueError:
            return None
    return None


def sse_frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"
