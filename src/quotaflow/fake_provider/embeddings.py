"""The fake provider's embeddings endpoints, in the providers' real wire formats.

* ``openai``: ``POST /v1/embeddings`` — ``input`` a string, strings or token arrays;
  ``encoding_format`` ``float`` or ``base64`` (little-endian float32); ``dimensions``;
  ``usage.prompt_tokens``.
* ``gemini``: ``POST /{v1,v1beta}/models/{model}:batchEmbedContents`` (``requests[]``, each
  with ``content.parts[].text`` and ``outputDimensionality``) and ``:embedContent``;
  answers carry no token counts, as Gemini's do.

Keys, quotas and rate limits are checked as on the chat endpoint and answered in the
protocol's own error format. A vector is a pure function of its text (SHA-256 based, 8
dimensions unless asked otherwise), so tests can compare them; tokens follow the fake's rule
(``ceil(utf8_bytes / 4)`` per text, one per token of a token array).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import orjson
from aiohttp import web

from quotaflow.fake_provider.admission import admit
from quotaflow.fake_provider.protocol import JSON_TYPE, ApiError, WireProtocol
from quotaflow.fake_provider.state import FakeProviderState
from quotaflow.fake_provider.tokens import ceil_quarter, text_bytes

DEFAULT_DIMENSIONS = 8


def vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The fake embedding of ``text``: values in [-1, 1), the same for the same text."""
    out: list[float] = []
    seed = text.encode("utf-8")
    while len(out) < dimensions:
        seed = hashlib.sha256(seed).digest()
        out += [(b - 128) / 128 for b in seed]
    return out[:dimensions]


def _tokens(item: Any) -> int:
    if isinstance(item, str):
        return ceil_quarter(text_bytes(item))
    return len(item) if isinstance(item, list) else 1


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), headers={"Content-Type": JSON_TYPE})


def openai_route(state: FakeProviderState, proto: WireProtocol) -> web.RouteDef:
    async def embeddings(request: web.Request) -> web.StreamResponse:
        try:
            data = orjson.loads(await request.read())
            model, raw = data.get("model"), data.get("input")
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(model, str) or not isinstance(items, list) or not items:
                raise proto.invalid_request("'model' and a non-empty 'input' are required")
            if all(isinstance(t, int) for t in items):
                items = [items]  # one token array
            prompt = sum(_tokens(i) for i in items)
            req = admit(state, proto, proto.extract_key(request), model, prompt)
        except ApiError as err:
            return err.response()
        except (orjson.JSONDecodeError, AttributeError):
            return proto.invalid_request("the body must be a JSON object").response()
        dims = data.get("dimensions") or DEFAULT_DIMENSIONS
        b64 = data.get("encoding_format") == "base64"
        out = []
        for i, item in enumerate(items):
            values = vector(item if isinstance(item, str) else str(item), dims)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
                if b64
                else values
            )
            out.append({"object": "embedding", "index": i, "embedding": encoded})
        state.record_success(req.key, model, prompt, 0)
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        return _json({"object": "list", "data": out, "model": model, "usage": usage})

    return web.post("/v1/embeddings", embeddings)


def _gemini_values(one: Any) -> tuple[str, int | None]:
    parts = one["content"]["parts"]
    return "".join(p.get("text", "") for p in parts), one.get("outputDimensionality")


def gemini_routes(state: FakeProviderState, proto: WireProtocol) -> list[web.RouteDef]:
    async def embed(request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        batch = request.match_info["method"] == "batchEmbedContents"
        try:
            data = orjson.loads(await request.read())
            asks = data["requests"] if batch else [data]
            texts = [_gemini_values(a) for a in asks]
            if not texts:
                raise proto.invalid_request("requests must not be empty")
            prompt = sum(ceil_quarter(text_bytes(t)) for t, _ in texts)
            req = admit(state, proto, proto.extract_key(request), model, prompt)
        except ApiError as err:
            return err.response()
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return proto.invalid_request("Invalid JSON payload received.").response()
        state.record_success(req.key, model, prompt, 0)
        vectors = [{"values": vector(t, d or DEFAULT_DIMENSIONS)} for t, d in texts]
        return _json({"embeddings": vectors} if batch else {"embedding": vectors[0]})

    path = r"/{version:v1|v1beta}/models/{model:[^/:]+}:{method:batchEmbedContents|embedContent}"
    return [web.post(path, embed)]


def embedding_routes(state: FakeProviderState, proto: WireProtocol) -> list[web.RouteDef]:
    """The embeddings routes of ``proto`` (Anthropic has none)."""
    if proto.name == "openai":
        return [openai_route(state, proto)]
    if proto.name == "gemini":
        return gemini_routes(state, proto)
    return []
