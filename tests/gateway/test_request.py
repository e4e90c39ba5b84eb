"""Validation of OpenAI chat requests before anything is reserved."""

from __future__ import annotations

import pytest

from quotaflow.errors import BadRequest
from quotaflow.gateway.request import parse_chat_request

MSG = [{"role": "user", "content": "hi"}]
P = frozenset({"openai", "groq"})


def parse(body: object):
    return parse_chat_request(body, max_tokens_cap=100_000, known_providers=P)


def test_own_fields_are_taken_out_and_everything_else_kept() -> None:
    req = parse(
        {
            "model": "auto",
            "messages": MSG,
            "complexity": "simple",
            "preferred_provider": "groq",
            "seed": 1,
            "x_future": [1],
        }
    )
    assert req.complexity == "simple" and req.preferred_provider == "groq"
    assert req.body == {"model": "auto", "messages": MSG, "seed": 1, "x_future": [1]}


def test_stream_options_and_caps() -> None:
    req = parse(
        {
            "model": "m",
            "messages": MSG,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 50,
            "max_completion_tokens": 40,
        }
    )
    assert req.stream and req.include_usage and req.max_tokens == 40
    assert parse({"model": "m", "messages": MSG, "stream": None}).stream is False


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MSG}, "model"),
        ({"model": "", "messages": MSG}, "model"),
        ({"model": "m", "messages": "hi"}, "messages"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            "messages[0].content[0]",
        ),
        ({"model": "m", "messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": MSG, "max_tokens": True}, "max_tokens"),
        (
            {"model": "m", "messages": MSG, "max_completion_tokens": 100_001},
            "max_completion_tokens",
        ),
        ({"model": "m", "messages": MSG, "top_p": 1.5}, "top_p"),
        ({"model": "m", "messages": MSG, "n": 0}, "n"),
        ({"model": "m", "messages": MSG, "stop": [1]}, "stop"),
        ({"model": "m", "messages": MSG, "tools": {"a": 1}}, "tools"),
        ({"model": "m", "messages": MSG, "stream_options": []}, "stream_options"),
        ({"model": "m", "messages": MSG, "user": 5}, "user"),
        ({"model": "m", "messages": MSG, "preferred_provider": "anthropic"}, "preferred_provider"),
    ],
)
def test_bad_fields_name_the_parameter(body: dict, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(body)
    assert info.value.param == param
    assert info.value.status == 400


def test_non_object_body() -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        parse([1, 2])
