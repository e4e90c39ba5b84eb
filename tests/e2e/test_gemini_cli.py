"""Gemini CLI's own request shapes (recorded from ``gemini -p`` 0.61.0 pointed at a capture
server) through a real ``quotaflow serve`` onto each wire protocol.

Before each turn Gemini CLI asks a small model to score the task's complexity, as JSON under
an upper-case OpenAPI schema (``responseMimeType`` + ``responseJsonSchema``), and retries a
non-JSON answer until it gives up; then it streams the turn with ``parametersJsonSchema``
tools and ``thinkingConfig``. Both must come back in Gemini's shape whatever key serves them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agents import Agent, Served, serving
from tests.e2e.procs import ledger_rows

pytestmark = pytest.mark.e2e

AGENT_KEY = "qf-geminicli-0123456789abcdef"
PROVIDER_KEY = "sk-gemini-cli-0001"
SERVED = {"gemini": "gemini-2.5-flash", "openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
ROUTER_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "complexity_reasoning": {"type": "STRING", "description": "Brief explanation."},
        "complexity_score": {"type": "INTEGER", "description": "Complexity score from 1-100."},
    },
    "required": ["complexity_reasoning", "complexity_score"],
}
TOPIC_TOOL = {
    "name": "update_topic",
    "description": "Manages your narrative flow.",
    "parametersJsonSchema": {
        "type": "object",
        "properties": {"q": {"type": "string"}, "strategic_intent": {"type": "string"}},
        "required": ["q"],
    },
}
THINKING = {"includeThoughts": True, "thinkingLevel": "HIGH"}


AGENT = Agent("gemini-cli", AGENT_KEY, PROVIDER_KEY, aliases="gemini-*")


@pytest.fixture(scope="module", params=tuple(SERVED))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    protocol: str = request.param
    home: Path = tmp_path_factory.mktemp(f"gemini-cli-{protocol}")
    with serving(protocol, SERVED[protocol], AGENT, home) as s:
        yield s


def post(s: Served, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        s.gw.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "x-goog-api-key": AGENT_KEY,
            "x-goog-api-client": "google-genai-sdk/1.30.0 gl-node/v20.20.2",
        },
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        text = resp.read().decode()
    if path.endswith("alt=sse"):
        return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    return json.loads(text)


def session(text: str) -> list[dict[str, Any]]:
    context = "<session_context>\nThis is the Gemini CLI.\n</session_context>"
    return [{"role": "user", "parts": [{"text": context}, {"text": text}]}]


def test_the_routers_json_answer_parses_under_its_schema(served: Served) -> None:
    body = {
        "contents": session("ECHO: hi"),
        "systemInstruction": {"parts": [{"text": "You are a specialized Task Routing AI."}]},
        "generationConfig": {
            "temperature": 1,
            "topP": 0.95,
            "topK": 64,
            "responseMimeType": "application/json",
            "responseJsonSchema": ROUTER_SCHEMA,
            "thinkingConfig": THINKING,
        },
    }
    answer = post(served, "/v1beta/models/gemini-3.5-flash-lite:generateContent", body)
    parts = answer["candidates"][0]["content"]["parts"]
    value = json.loads("".join(p.get("text", "") for p in parts if not p.get("thought")))
    assert set(value) == {"complexity_reasoning", "complexity_score"}
    assert isinstance(value["complexity_score"], int)
    row = ledger_rows(served.home)[-1]
    assert (row["door"], row["agent"], row["model"]) == (
        "gemini",
        "gemini-cli",
        SERVED[served.protocol],
    )


def test_a_streamed_turn_with_a_tool_round_trip(served: Served) -> None:
    path = "/v1beta/models/gemini-3.1-pro-preview:streamGenerateContent?alt=sse"
    tools = [{"functionDeclarations": [TOPIC_TOOL]}]
    gen = {"temperature": 1, "thinkingConfig": THINKING}
    first = session("CALL_TOOL ls")
    chunks = post(served, path, {"contents": first, "tools": tools, "generationConfig": gen})
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    [call] = [p["functionCall"] for p in parts if "functionCall" in p]
    assert (call["name"], call["args"]) == ("update_topic", {"q": "ls"})
    answer = {"name": "update_topic", "response": {"output": "noted"}}
    if call.get("id"):
        answer["id"] = call["id"]
    history = [
        *first,
        {"role": "model", "parts": [{"functionCall": call}]},
        {"role": "user", "parts": [{"functionResponse": answer}]},
        {"role": "user", "parts": [{"text": "ECHO: topic set"}]},
    ]
    chunks = post(served, path, {"contents": history, "tools": tools, "generationConfig": gen})
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == "topic set"
