"""A door's view of an outbound adapter: translated, or passed through natively.

The gateway asks a request's :class:`Door` for the adapter of each provider protocol it may
try. A door answers with the protocol's own adapter wrapped so that its answers come out in
the door's protocol (:class:`TranslatedAdapter`: OpenAI in the middle), with a native adapter
when the door speaks the provider's protocol (bytes through, usage from the provider's own
fields), or with None when the protocol cannot serve the door (no such deployment is tried).

Streams translated for a door end with the door's own closing bytes instead of OpenAI's
``data: [DONE]``, and report a cut the door's way: see :class:`DoorTranslator`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from quotaflow.adapters.base import (
    Adapter,
    CallTarget,
    ChatResult,
    Headers,
    RateInfo,
    SSEEvent,
    StreamState,
    StreamTranslator,
    UpstreamCall,
    UpstreamFailure,
)
from quotaflow.adapters.doors.base import DoorStream, Restream


class Door(Protocol):
    """How one request's door reaches providers."""

    model_kind: str  # the models it reaches: "chat" or "embedding"

    def adapter(self, protocol: str) -> Adapter | None:
        """The adapter for a provider of ``protocol``; None when it cannot serve the door."""
        ...


class DoorTranslator(StreamTranslator, Protocol):
    """A stream translator that also writes the door's end of a stream."""

    def closing(self) -> bytes:
        """The bytes after a complete answer (written once it is booked)."""
        ...

    def failed(self, failure: UpstreamFailure) -> bytes:
        """The bytes that tell the client its answer was cut."""
        ...


def cut_message(failure: UpstreamFailure) -> dict[str, Any]:
    return {"message": f"upstream stream failed: {failure.message}", "code": failure.kind.value}


class TranslatedStream:
    """The inner adapter's OpenAI frames, re-rendered by a door's :class:`DoorStream`."""

    def __init__(self, inner: StreamTranslator, door: DoorStream) -> None:
        self._inner = inner
        self.state: StreamState = inner.state  # the same object: the inner translator fills it
        self._door = door
        self._restream = Restream(door)

    def feed(self, event: SSEEvent) -> list[bytes]:
        frames = self._inner.feed(event)
        out = self._restream.feed(b"".join(frames)) if frames else b""
        return [out] if out else []

    def closing(self) -> bytes:
        return b"".join(self._door.done())

    def failed(self, failure: UpstreamFailure) -> bytes:
        return b"".join(self._door.error(cut_message(failure)))


class TranslatedAdapter:
    """``inner`` (speaking a provider's protocol to OpenAI) with answers rendered for a door."""

    protocol: ClassVar[str] = "translated"  # the provider's protocol is the inner adapter's

    def __init__(
        self,
        inner: Adapter,
        render: Callable[[Mapping[str, Any]], dict[str, Any]],
        stream: Callable[[], DoorStream],
    ) -> None:
        self._inner = inner
        self._render = render
        self._stream = stream

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        return self._inner.build_request(body, target, max_tokens=max_tokens, stream=stream)

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        result = self._inner.parse_response(status, headers, body, model, created)
        return ChatResult(self._render(result.body), result.usage, result.finish_reason)

    def stream_translator(
        self, model: str, include_usage: bool, created: int = 0
    ) -> TranslatedStream:
        # The door always needs the usage: it reports it in its own last event.
        return TranslatedStream(self._inner.stream_translator(model, True, created), self._stream())

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return self._inner.classify_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        return self._inner.rate_info(headers)
