"""The fake model answers JSON when asked for it, valid under the request's schema — as
Gemini CLI's model router needs before every turn (it retries a non-JSON answer until it
gives up)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import jsonschema
import openai
import pytest
from google import genai
from google.genai import types

from quotaflow.fake_provider.json_reply import instance
from quotaflow.fake_provider.server import FakeProviderHandle

# Gemini CLI's router schema, as sent (OpenAPI's upper-case types).
ROUTER = {
    "type": "OBJECT",
    "properties": {
        "complexity_reasoning": {"type": "STRING", "description": "Brief explanation."},
        "complexity_score": {"type": "INTEGER", "description": "1-100."},
    },
    "required": ["complexity_reasoning", "complexity_score"],
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "level": {"enum": ["low", "high"]},
        "score": {"type": ["number", "null"], "minimum": 3},
        "nested": {"anyOf": [{"type": "object", "properties": {"ok": {"type": "boolean"}}}]},
        "n": {"type": "integer"},
    },
    "required": ["tags", "level", "score", "nested", "n"],
}


@pytest.mark.parametrize("schema", [SCHEMA, json.loads(json.dumps(ROUTER).lower())])
def test_the_instance_is_valid_under_its_schema(schema: dict[str, Any]) -> None:
    jsonschema.validate(instance(schema), schema)


async def test_gemini_json_mode_with_the_router_schema(gemini_fake: FakeProviderHandle) -> None:
    options = types.HttpOptions(base_url=gemini_fake.base_url)
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=ROUTER
    )
    async with genai.Client(api_key="AIza-test", http_options=options).aio as c:
        answer = await c.models.generate_content(
            model="gemini-2.5-flash", contents="route me", config=config
        )
    value = json.loads(answer.text or "")
    assert set(value) == {"complexity_reasoning", "complexity_score"}
    assert isinstance(value["complexity_score"], int)


async def test_openai_response_format(openai_fake: FakeProviderHandle) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    hi: Any = [{"role": "user", "content": "hi"}]
    async with openai.AsyncOpenAI(
        base_url=openai_fake.base_url, api_key="sk-test", max_retries=0
    ) as c:
        answer = await c.chat.completions.create(
            model="gpt-4o-mini", messages=hi, response_format=fmt
        )
        plain = await c.chat.completions.create(
            model="gpt-4o-mini", messages=hi, response_format={"type": "json_object"}
        )
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), SCHEMA)
    assert json.loads(plain.choices[0].message.content or "") == {}


async def test_anthropic_output_config_format(anthropic_fake: FakeProviderHandle) -> None:
    output_config = {"format": {"type": "json_schema", "schema": SCHEMA}}
    async with anthropic.AsyncAnthropic(
        base_url=anthropic_fake.base_url, api_key="sk-ant-test", max_retries=0
    ) as c:
        answer = await c.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=200,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"output_config": output_config},
        )
    block = answer.content[0]
    assert block.type == "text"
    jsonschema.validate(json.loads(block.text), SCHEMA)


async def test_a_required_tool_is_called_with_valid_input(openai_fake: FakeProviderHandle) -> None:
    """A model must call a tool that ``tool_choice`` requires, even without ``CALL_TOOL``; its
    input follows the tool's schema (as the Anthropic adapter's JSON emulation relies on)."""
    tool: Any = {"type": "function", "function": {"name": "answer", "parameters": SCHEMA}}
    hi: Any = [{"role": "user", "content": "hi"}]
    async with openai.AsyncOpenAI(
        base_url=openai_fake.base_url, api_key="sk-test", max_retries=0
    ) as c:
        forced = await c.chat.completions.create(
            model="gpt-4o-mini", messages=hi, tools=[tool], tool_choice="required"
        )
        free = await c.chat.completions.create(model="gpt-4o-mini", messages=hi, tools=[tool])
    [call] = forced.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "answer"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMA)
    assert free.choices[0].message.tool_calls is None
