"""What the request pipeline needs from each wire protocol (OpenAI, Anthropic, Gemini).

A protocol turns an HTTP request into a :class:`ChatRequest` (or an :class:`ApiError`
already in its wire format), renders a :class:`~.reply.Reply` as a body or as stream
frames, and knows its error bodies and headers. The pipeline does the rest: keys, faults,
quotas, rate limits, latency and accounting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson
from aiohttp import web

from quotaflow.fake_provider.ratelimit import Refusal
from quotaflow.fake_provider.reply import Reply

JSON_TYPE = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class ChatRequest:
    """The protocol-neutral facts the fake model needs about one chat request."""

    key: str
    model: str
    stream: bool
    max_tokens: int | None
    prompt_tokens: int
    last_user_text: str | None
    last_is_user: bool
    tool_name: str | None
    include_usage: bool = False
    sse: bool = True
    json_mode: bool = False  # the answer must be JSON (valid under ``json_schema`` if given)
    json_schema: Any = None
    forced_tool: tuple[str, Any] | None = None  # (name, input schema) when a call is required


@dataclass(slots=True)
class StreamPlan:
    """A streamed reply as wire frames: ``content`` are the chunks a cut can stop inside."""

    head: list[bytes] = field(default_factory=list)
    content: list[bytes] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)


class ApiError(Exception):
    """An error response in a protocol's own format, raised while handling a request."""

    def __init__(
        self, status: int, payload: object, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = orjson.dumps(payload)
        self.headers = {"Content-Type": JSON_TYPE, **(headers or {})}

    def response(self) -> web.Response:
        """The error as an aiohttp response."""
        return web.Response(status=self.status, body=self.body, headers=self.headers)


class WireProtocol(Protocol):
    """One provider's wire format, as the pipeline uses it."""

    name: ClassVar[str]
    stream_content_type: ClassVar[str]

    def routes(self, chat: Handler) -> list[web.RouteDef]:
        """The protocol's routes, with ``chat`` as the chat endpoint's handler."""
        ...

    def extract_key(self, request: web.Request) -> str | None:
        """The API key the request carries, if any."""
        ...

    def parse(self, request: web.Request, body: bytes, key: str) -> ChatRequest:
        """Validate the request like the real API does; raise :class:`ApiError` if it would not pass."""
        ...

    def invalid_request(self, message: str) -> ApiError:
        """A 400 for a body whose fields have the wrong JSON types."""
        ...

    def missing_key_error(self) -> ApiError:
        """The real API's answer to a request without a key."""
        ...

    def invalid_key_error(self, key: str) -> ApiError:
        """The real API's answer to an unknown or revoked key."""
        ...

    def quota_error(self, req: ChatRequest) -> ApiError:
        """The real API's "quota / credit exhausted" answer."""
        ...

    def rate_limit_error(self, req: ChatRequest, refusal: Refusal) -> ApiError:
        """The real API's per-minute rate-limit 429."""
        ...

    def status_error(self, req: ChatRequest, status: int, retry_after: float | None) -> ApiError:
        """The real API's error body for an HTTP ``status`` (an injected fault)."""
        ...

    def context_length_error(self, req: ChatRequest) -> ApiError:
        """The real API's 400 for a prompt longer than the model's context window."""
        ...

    def content_filter(self, req: ChatRequest) -> ApiError | tuple[bytes, StreamPlan]:
        """The real API's content-filter refusal: an error, or a 200 (body, stream plan)."""
        ...

    def headers(self, req: ChatRequest) -> dict[str, str]:
        """Headers of a successful response (content type excluded)."""
        ...

    def render(self, req: ChatRequest, reply: Reply) -> bytes:
        """The non-streaming response body."""
        ...

    def stream_plan(self, req: ChatRequest, reply: Reply) -> StreamPlan:
        """The streamed response as frames."""
        ...

    def malformed(self, req: ChatRequest) -> bytes:
        """A 200 body (or one stream frame) that is not valid JSON."""
        ...


def retry_after_header(seconds: float) -> str:
    """``retry-after`` value: whole seconds as an integer, fractions as a decimal."""
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:.3f}".rstrip("0")
