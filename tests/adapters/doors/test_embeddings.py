"""The embeddings door: request checks, OpenAI passthrough, Gemini translation."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import CallTarget
from quotaflow.adapters.doors.embeddings import (
    EmbeddingsDoor,
    GeminiEmbeddings,
    OpenAIEmbeddings,
    parse_embedding_request,
)
from quotaflow.errors import BadRequest, UnsupportedByProtocol


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "e", "input": []}, "input"),
        ({"model": "e", "input": [1, "a"]}, "input"),
        ({"model": "e", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "e", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_embedding_request(body)
    assert err.value.param == param


def test_anthropic_cannot_embed() -> None:
    door = EmbeddingsDoor(parse_embedding_request({"model": "e", "input": "x"}))
    assert door.adapter("anthropic") is None
    assert isinstance(door.adapter("openai"), OpenAIEmbeddings)


def test_openai_request_and_answer_pass_through() -> None:
    req = parse_embedding_request({"model": "e", "input": ["a", "b"], "encoding_format": "base64"})
    adapter = OpenAIEmbeddings(req, adapter_for("openai"))
    call = adapter.build_request(
        {}, CallTarget("https://x/v1", "up-model", "sk"), max_tokens=1, stream=False
    )
    assert call.url == "https://x/v1/embeddings"
    assert orjson.loads(call.body) == {
        "model": "up-model",
        "input": ["a", "b"],
        "encoding_format": "base64",
    }
    answer = {
        "object": "list",
        "data": [],
        "model": "up-model",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    result = adapter.parse_response(200, {}, orjson.dumps(answer), "e")
    assert result.body == answer and result.usage.prompt_tokens == 4 and not result.usage.estimated


def test_gemini_batch_request_and_base64_answer() -> None:
    req = parse_embedding_request(
        {"model": "e", "input": ["a", "b"], "dimensions": 2, "encoding_format": "base64"}
    )
    adapter = GeminiEmbeddings(req, adapter_for("gemini"))
    call = adapter.build_request(
        {}, CallTarget("https://g/v1beta", "emb", "k"), max_tokens=1, stream=False
    )
    assert call.url == "https://g/v1beta/models/emb:batchEmbedContents"
    assert orjson.loads(call.body)["requests"][1] == {
        "model": "models/emb", "outputDimensionality": 2, "content": {"parts": [{"text": "b"}]}
    }  # fmt: skip
    answer = {"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 0.0]}]}
    result = adapter.parse_response(200, {}, orjson.dumps(answer), "e")
    first = base64.b64decode(result.body["data"][0]["embedding"])
    assert struct.unpack("<2f", first) == (0.5, -1.0)
    assert result.usage.estimated and result.body["usage"]["prompt_tokens"] == 2
    tokens = GeminiEmbeddings(
        parse_embedding_request({"model": "e", "input": [1, 2]}), adapter_for("gemini")
    )
    with pytest.raises(UnsupportedByProtocol):
        tokens.build_request({}, CallTarget("https://g", "emb", "k"), max_tokens=1, stream=False)
