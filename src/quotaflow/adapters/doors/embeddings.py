"""The embeddings door (``POST /v1/embeddings``, OpenAI's shape) and its upstream calls.

Providers that embed: OpenAI-compatible ones (``POST {base}/embeddings``, the request passed
through, its answer passed back) and Gemini (``models/{model}:batchEmbedContents``,
translated). Anthropic has no embeddings endpoint.

Decisions:

* ``input`` is a string, a list of strings, or token arrays (a list of integers, or a list of
  such lists); token arrays go to OpenAI-compatible providers only.
* ``encoding_format`` ``base64`` is little-endian float32, as OpenAI encodes it (the ``openai``
  SDK asks for it by default and decodes it); Gemini's floats are encoded by the door.
* ``dimensions`` becomes Gemini's ``outputDimensionality``.
* Usage is the provider's ``prompt_tokens``; Gemini reports none, so its input is estimated
  (and booked as estimated).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from quotaflow.adapters.base import (
    Adapter,
    CallTarget,
    ChatResult,
    Headers,
    MalformedResponse,
    RateInfo,
    StreamTranslator,
    UpstreamCall,
    UpstreamFailure,
    load_json_object,
)
from quotaflow.adapters.translate import copy_headers
from quotaflow.engine.tokens import text_tokens
from quotaflow.errors import BadRequest, UnsupportedByProtocol
from quotaflow.types import Usage

MAX_INPUTS = 2048  # OpenAI's own cap on inputs per request


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    body: dict[str, Any]  # what goes to an OpenAI-compatible provider (model set per call)
    model: str
    texts: tuple[str, ...] | None  # None: token arrays
    encoding_format: str
    dimensions: int | None
    prompt_estimate: int


def _inputs(raw: Any) -> tuple[tuple[str, ...] | None, int]:
    """The input as texts (or None for token arrays) and its estimated token count."""
    if isinstance(raw, str):
        return (raw,), text_tokens(raw)
    if isinstance(raw, list) and raw:
        if len(raw) > MAX_INPUTS:
            raise BadRequest(f"at most {MAX_INPUTS} inputs per request", param="input")
        if all(isinstance(s, str) for s in raw):
            return tuple(raw), sum(text_tokens(s) for s in raw)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
            return None, len(raw)
        if all(isinstance(x, list) and x and all(isinstance(t, int) for t in x) for x in raw):
            return None, sum(len(x) for x in raw)
    raise BadRequest(
        "'input' must be a string, a non-empty list of strings, or token arrays", param="input"
    )


def parse_embedding_request(body: Any) -> EmbeddingRequest:
    """A checked ``/v1/embeddings`` request; bad input names its field."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string", param="model")
    texts, estimate = _inputs(body.get("input"))
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise BadRequest("'dimensions' must be a positive integer", param="dimensions")
    return EmbeddingRequest(dict(body), model, texts, fmt, dims, estimate)


def encode(values: Sequence[float], fmt: str) -> list[float] | str:
    """One embedding in the client's ``encoding_format``."""
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return [float(v) for v in values]


def embedding_list(
    vectors: Sequence[Sequence[float]], fmt: str, model: str, usage: Usage
) -> dict[str, Any]:
    """OpenAI's ``list`` of ``embedding`` objects."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v, fmt)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }


class _EmbeddingAdapter:
    """What both embedding adapters share: errors and rate limits as the chat adapter of
    their protocol reads them; no streams."""

    protocol: ClassVar[str]

    def __init__(self, req: EmbeddingRequest, chat: Adapter) -> None:
        self.req = req
        self._chat = chat

    def stream_translator(
        self, model: str, include_usage: bool, created: int = 0
    ) -> StreamTranslator:
        raise BadRequest("embeddings are never streamed", param="stream")

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamFailure:
        return self._chat.classify_error(status, headers, body)

    def rate_info(self, headers: Headers) -> RateInfo | None:
        return self._chat.rate_info(headers)


class OpenAIEmbeddings(_EmbeddingAdapter):
    """``POST {base}/embeddings``: the client's request and the provider's answer pass through
    (only ``model`` is set to the deployment's)."""

    protocol: ClassVar[str] = "openai"

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        headers = {
            "authorization": f"Bearer {target.secret}",
            "content-type": "application/json",
            "accept": "application/json",
        }
        copy_headers(headers, target.headers)
        out = {**self.req.body, "model": target.model}
        url = target.base_url.rstrip("/") + "/embeddings"
        return UpstreamCall(url, headers, orjson.dumps(out), False)

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        obj = load_json_object(body)
        if not isinstance(obj.get("data"), list):
            raise MalformedResponse("the provider's answer has no data list")
        u = obj.get("usage")
        prompt = u.get("prompt_tokens") if isinstance(u, dict) else None
        if isinstance(prompt, int):
            usage = Usage(prompt, 0)
        else:
            usage = Usage(self.req.prompt_estimate, 0, estimated=True)
        return ChatResult(obj, usage)


class GeminiEmbeddings(_EmbeddingAdapter):
    """``models/{model}:batchEmbedContents``, one request per input, back in OpenAI's shape."""

    protocol: ClassVar[str] = "gemini"

    def build_request(
        self, body: Mapping[str, Any], target: CallTarget, *, max_tokens: int | None, stream: bool
    ) -> UpstreamCall:
        if self.req.texts is None:
            raise UnsupportedByProtocol(
                "token arrays cannot be embedded by the gemini protocol", param="input"
            )
        one: dict[str, Any] = {"model": f"models/{target.model}"}
        if self.req.dimensions is not None:
            one["outputDimensionality"] = self.req.dimensions
        requests = [{**one, "content": {"parts": [{"text": t}]}} for t in self.req.texts]
        headers = {"x-goog-api-key": target.secret, "content-type": "application/json"}
        copy_headers(headers, target.headers)
        url = f"{target.base_url.rstrip('/')}/models/{target.model}:batchEmbedContents"
        return UpstreamCall(url, headers, orjson.dumps({"requests": requests}), False)

    def parse_response(
        self, status: int, headers: Headers, body: bytes, model: str, created: int = 0
    ) -> ChatResult:
        embeddings = load_json_object(body).get("embeddings")
        if not isinstance(embeddings, list):
            raise MalformedResponse("the provider's answer has no embeddings list")
        vectors = [e.get("values") if isinstance(e, dict) else None for e in embeddings]
        if not all(isinstance(v, list) for v in vectors):
            raise MalformedResponse("an embedding in the provider's answer has no values")
        usage = Usage(self.req.prompt_estimate, 0, estimated=True)
        return ChatResult(
            embedding_list(vectors, self.req.encoding_format, model, usage),  # type: ignore[arg-type]
            usage,
        )


def embedding_adapter(protocol: str, req: EmbeddingRequest, chat: Adapter) -> Adapter | None:
    """The adapter embedding ``req`` through ``protocol``; None when it cannot embed."""
    if protocol == "openai":
        return OpenAIEmbeddings(req, chat)
    if protocol == "gemini":
        return GeminiEmbeddings(req, chat)
    return None


class EmbeddingsDoor:
    """OpenAI-compatible and Gemini providers embed; Anthropic ones are never tried."""

    model_kind = "embedding"

    def __init__(self, req: EmbeddingRequest) -> None:
        self.req = req

    def adapter(self, protocol: str) -> Adapter | None:
        from quotaflow.adapters import adapter_for

        return embedding_adapter(protocol, self.req, adapter_for(protocol))
