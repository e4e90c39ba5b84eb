"""The inbound doors end to end with the official clients as agents use them: the
``anthropic`` SDK on ``/v1/messages``, the ``openai`` SDK's Responses API and
``google-genai`` → a real ``quotaflow serve`` → the fake provider of each wire protocol, with
each answer's accounting checked in ``/api/history``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as gtypes

from tests.e2e.procs import Proc, fake_control, fake_provider, gateway

pytestmark = pytest.mark.e2e

PROTOCOLS = ("openai", "anthropic", "gemini")
KEY = "sk-doors-one-0001"
MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.0-flash"}
BASE = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta"}
WEATHER = {
    "name": "lookup",
    "description": "Look a word up.",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
}


@dataclass(frozen=True)
class Served:
    gw: Proc
    protocol: str

    @property
    def model(self) -> str:
        return MODEL[self.protocol]

    def history(self, n: int = 50) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.gw.url}/api/history?limit={n}", timeout=10) as r:
            rows: list[dict[str, Any]] = json.loads(r.read())["history"]
        return rows


def config(protocol: str, url: str) -> str:
    return f"""settings:
  strategy: priority
  max_wait_s: 0
providers:
  - name: p
    protocol: {protocol}
    base_url: {url}{BASE[protocol]}
    timeout_s: 5
    models:
      - {{name: {MODEL[protocol]}, context_window: 100000, input: 2.0, output: 8.0}}
    keys:
      - {{id: a, secret: {KEY}, limits: []}}
"""


@pytest.fixture(scope="module", params=PROTOCOLS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A gateway in front of one fake provider of each protocol (every door is translated
    onto it unless the protocols match)."""
    protocol: str = request.param
    home: Path = tmp_path_factory.mktemp(f"doors-{protocol}")
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(fake_provider(protocol, "--key", KEY))
        fake_control(fake, "/_fake/reset")
        gw = stack.enter_context(gateway(config(protocol, fake.url), home))
        yield Served(gw, protocol)


def anthropic_client(s: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.gw.url, api_key="unused", max_retries=0, timeout=20)


def last_row(s: Served) -> dict[str, Any]:
    return s.history(1)[0]


# ---------------------------------------------------------------------------- /v1/messages


def test_messages_plain_with_usage_in_history(served: Served) -> None:
    with anthropic_client(served) as c:
        raw = c.messages.with_raw_response.create(
            model=served.model, max_tokens=50, system="be brief",
            messages=[{"role": "user", "content": "ECHO: hello from claude"}],
        )  # fmt: skip
        msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.text for b in msg.content if b.type == "text"] == ["hello from claude"]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 3 and msg.usage.input_tokens > 0
    assert raw.headers["x-quotaflow-provider"] == "p"
    row = last_row(served)
    assert row["status"] == "ok" and row["model"] == served.model and row["door"] == "messages"
    assert row["tokens_used"] == msg.usage.input_tokens + msg.usage.output_tokens
    with openai_client(served) as oc:
        oc.chat.completions.create(
            model=served.model, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert last_row(served)["door"] == "chat"


def test_messages_stream_event_sequence(served: Served) -> None:
    with anthropic_client(served) as c, c.messages.stream(
        model=served.model, max_tokens=50,
        messages=[{"role": "user", "content": "ECHO: one two three four"}],
    ) as stream:  # fmt: skip
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert kinds.count("text") >= 2  # real deltas
    assert final.content[0].type == "text" and final.content[0].text == "one two three four"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    row = last_row(served)
    assert row["status"] == "ok" and row["tokens_used"] == final.usage.input_tokens + 4
    assert row["door"] == "messages"


def test_messages_tool_round_trip_streamed_and_plain(served: Served) -> None:
    with anthropic_client(served) as c:
        with c.messages.stream(
            model=served.model, max_tokens=50, tools=[WEATHER],
            messages=[{"role": "user", "content": "please CALL_TOOL zeta"}],
        ) as stream:  # fmt: skip
            first = stream.get_final_message()
        use = next(b for b in first.content if b.type == "tool_use")
        assert first.stop_reason == "tool_use"
        assert (use.name, use.input) == ("lookup", {"q": "zeta"})
        follow = c.messages.create(
            model=served.model, max_tokens=50, tools=[WEATHER],
            messages=[
                {"role": "user", "content": "please CALL_TOOL zeta"},
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "last letter"},
                    {"type": "text", "text": "ECHO: thanks"},
                ]},
            ],
        )  # fmt: skip
    assert follow.content[0].type == "text" and follow.content[0].text == "thanks"


def test_count_tokens_by_an_anthropic_key_else_estimated(served: Served) -> None:
    turns: Any = [{"role": "user", "content": "ECHO: count me please"}]
    with anthropic_client(served) as c:
        raw = c.messages.with_raw_response.count_tokens(model=served.model, messages=turns)
        sent = c.messages.create(model=served.model, max_tokens=10, messages=turns)
    counted = raw.parse()
    if served.protocol == "anthropic":
        assert counted.input_tokens == sent.usage.input_tokens  # the provider's own count
        assert "x-quotaflow-estimated" not in raw.headers
        assert raw.headers["x-quotaflow-provider"] == "p"
    else:
        assert counted.input_tokens > 0
        assert raw.headers["x-quotaflow-estimated"] == "true"
        assert json.loads(raw.http_response.content)["estimated"] is True


def test_messages_async_client(served: Served) -> None:
    async def ask() -> Any:
        async with anthropic.AsyncAnthropic(
            base_url=served.gw.url, api_key="unused", max_retries=0, timeout=20
        ) as c:
            return await c.messages.create(
                model=served.model, max_tokens=20,
                messages=[{"role": "user", "content": "ECHO: async works"}],
            )  # fmt: skip

    msg = asyncio.run(ask())
    assert msg.content[0].text == "async works"


def test_messages_errors_in_anthropic_shape(served: Served) -> None:
    with anthropic_client(served) as c:
        with pytest.raises(anthropic.BadRequestError) as bad:
            c.messages.create(model=served.model, max_tokens=0, messages=[])
        with pytest.raises(anthropic.NotFoundError) as missing:
            c.messages.create(
                model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    assert bad.value.body["type"] == "error"  # type: ignore[index]
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# ---------------------------------------------------------------------------- /v1/responses


def openai_client(s: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.gw.url + "/v1", api_key="unused", max_retries=0, timeout=20)


FUNCTION = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


def test_responses_plain_and_stream(served: Served) -> None:
    with openai_client(served) as c:
        resp = c.responses.create(
            model=served.model, instructions="be brief", input="ECHO: hello responses",
            max_output_tokens=40, store=False,
        )  # fmt: skip
        assert resp.status == "completed" and resp.output_text == "hello responses"
        assert resp.usage is not None and resp.usage.output_tokens == 2
        row = last_row(served)
        assert row["status"] == "ok" and row["tokens_used"] == resp.usage.total_tokens
        assert row["door"] == "responses"

        events = list(c.responses.create(
            model=served.model, input="ECHO: one two three", stream=True, store=False,
        ))  # fmt: skip
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "one two three" and len(deltas) >= 2
    done = events[-1].response  # type: ignore[union-attr]
    assert done.output_text == "one two three" and done.usage.output_tokens == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_function_call_round_trip(served: Served) -> None:
    with openai_client(served) as c:
        first = c.responses.create(
            model=served.model, input="please CALL_TOOL zeta", tools=[FUNCTION], store=False,  # type: ignore[list-item]
        )  # fmt: skip
        call = next(o for o in first.output if o.type == "function_call")
        assert (call.name, json.loads(call.arguments)) == ("lookup", {"q": "zeta"})
        follow = c.responses.create(
            model=served.model, tools=[FUNCTION], store=False,  # type: ignore[list-item]
            input=[
                {"role": "user", "content": "please CALL_TOOL zeta"},
                call.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"type": "function_call_output", "call_id": call.call_id, "output": "last"},
                {"role": "user", "content": "ECHO: done"},
            ],
        )  # fmt: skip
        assert follow.output_text == "done"
        with pytest.raises(openai.BadRequestError, match="previous_response_id"):
            c.responses.create(model=served.model, input="hi", previous_response_id="resp_x")


# ---------------------------------------------------------------------------- Gemini's API


@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
def test_google_genai_plain_stream_and_tools(served: Served, api_version: str) -> None:
    c = genai.Client(
        api_key="unused",
        http_options=gtypes.HttpOptions(base_url=served.gw.url, api_version=api_version),
    )
    resp = c.models.generate_content(model=served.model, contents="ECHO: hello gemini door")
    assert resp.text == "hello gemini door"
    assert resp.usage_metadata is not None and resp.usage_metadata.candidates_token_count == 3
    row = last_row(served)
    assert row["tokens_used"] == resp.usage_metadata.total_token_count
    assert row["door"] == "gemini"

    pieces = [ch.text for ch in c.models.generate_content_stream(
        model=served.model, contents="ECHO: one two three four",
    )]  # fmt: skip
    assert "".join(p or "" for p in pieces) == "one two three four"

    tool = gtypes.Tool(function_declarations=[gtypes.FunctionDeclaration(
        name="lookup", description="Look a word up.",
        parameters=gtypes.Schema(type="OBJECT", properties={"q": gtypes.Schema(type="STRING")}),
    )])  # fmt: skip
    called = c.models.generate_content(
        model=served.model, contents="please CALL_TOOL zeta",
        config=gtypes.GenerateContentConfig(tools=[tool], automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True)),
    )  # fmt: skip
    assert called.function_calls is not None
    assert (called.function_calls[0].name, called.function_calls[0].args) == (
        "lookup",
        {"q": "zeta"},
    )


# ---------------------------------------------------------------------------- native


def test_anthropic_keys_get_the_messages_request_as_sent(served: Served) -> None:
    """A thinking block the client sends back reaches an Anthropic key (the fake counts its
    text in the prompt); a translation for another protocol has to drop it."""
    if served.protocol == "gemini":
        pytest.skip("the Gemini fake's count of a translated thought is not the point here")
    thinking = {"type": "thinking", "thinking": "x" * 400, "signature": "sig"}
    turns: list[Any] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
        {"role": "user", "content": "ECHO: ok"},
    ]
    with anthropic_client(served) as c:
        plain = c.messages.create(model=served.model, max_tokens=20, messages=turns)
        turns[1]["content"] = [thinking, {"type": "text", "text": "hello"}]
        with_thought = c.messages.create(model=served.model, max_tokens=20, messages=turns)
    grew = with_thought.usage.input_tokens - plain.usage.input_tokens
    assert grew == (100 if served.protocol == "anthropic" else 0)  # ceil(400 / 4)
    assert last_row(served)["tokens_used"] == with_thought.usage.input_tokens + 1


def test_gemini_keys_get_the_generate_content_request_as_sent(served: Served) -> None:
    if served.protocol != "gemini":
        pytest.skip("native only on Gemini keys")
    c = genai.Client(api_key="unused", http_options=gtypes.HttpOptions(base_url=served.gw.url))
    turns = [
        gtypes.Content(role="user", parts=[gtypes.Part(text="hi")]),
        gtypes.Content(role="model", parts=[gtypes.Part(text="y" * 400, thought=True)]),
        gtypes.Content(role="user", parts=[gtypes.Part(text="ECHO: ok")]),
    ]
    with_thought = c.models.generate_content(model=served.model, contents=turns)
    plain = c.models.generate_content(model=served.model, contents=[turns[0], turns[2]])
    assert with_thought.usage_metadata is not None and plain.usage_metadata is not None
    assert (
        with_thought.usage_metadata.prompt_token_count - plain.usage_metadata.prompt_token_count
    ) > 100  # the thought part went upstream untouched


def test_langchain_chat_anthropic(served: Served) -> None:
    lc = pytest.importorskip("langchain_anthropic")
    chat = lc.ChatAnthropic(
        model=served.model, base_url=served.gw.url, api_key="unused", max_tokens=20,
        max_retries=0,
    )  # fmt: skip
    assert chat.invoke("ECHO: from langchain").content == "from langchain"
    assert last_row(served)["door"] == "messages"


def test_model_aliases_let_claude_names_through_without_an_anthropic_key(
    tmp_path: Path,
) -> None:
    """A team with only OpenAI-compatible keys runs an Anthropic client (Claude Code sends
    ``claude-*`` names): ``settings.model_aliases`` maps the names onto what it has."""
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(fake_provider("openai", "--key", KEY))
        cfg = config("openai", fake.url).replace(
            "  max_wait_s: 0\n", "  max_wait_s: 0\n  model_aliases: {'claude-*': gpt-4o-mini}\n"
        )
        gw = stack.enter_context(gateway(cfg, tmp_path / "home"))
        served = Served(gw, "openai")
        with anthropic_client(served) as c:
            msg = c.messages.create(
                model="claude-sonnet-4-5", max_tokens=20,
                messages=[{"role": "user", "content": "ECHO: aliased"}],
            )  # fmt: skip
            with pytest.raises(anthropic.NotFoundError):
                c.messages.create(
                    model="mistral-large", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
        row = served.history(1)[0]
    assert msg.content[0].text == "aliased"  # type: ignore[union-attr]
    assert (row["model"], row["door"]) == ("gpt-4o-mini", "messages")
