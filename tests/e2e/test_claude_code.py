"""Claude Code's own request shape (recorded from ``claude -p`` 2.1.197 pointed at a capture
server) through a real ``quotaflow serve`` onto each wire protocol.

What Claude Code sends that plain SDK calls do not: ``?beta=true`` on the path, an
``anthropic-beta`` list, an agent key as ``Authorization: Bearer`` (``ANTHROPIC_AUTH_TOKEN``),
cached system blocks, ``thinking: adaptive``, ``context_management``, ``output_config``,
``metadata.user_id`` as a JSON string — and a ``system`` message after the user's turn
(Claude Opus 4.8's mid-conversation instructions), which quotaflow once refused with a 400.
The tool round trip is the one ``claude -p`` makes when the model calls a tool and gets its
result back.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agents import Agent, Served, serving
from tests.e2e.procs import ledger_rows, wait_for

pytestmark = pytest.mark.e2e

AGENT_KEY = "qf-claudecode-0123456789abcdef"
PROVIDER_KEY = "sk-claude-code-0001"
OPUS = "claude-opus-4-8"
SERVED = {"anthropic": OPUS, "openai": "gpt-4o-mini", "gemini": "gemini-2.5-flash"}
BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
TOOL = {
    "name": "Read",
    "description": "Reads a file from the local filesystem.",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "q": {"type": "string"}},
        "additionalProperties": False,
    },
}


AGENT = Agent("claude-code", AGENT_KEY, PROVIDER_KEY, aliases="claude-*")


@pytest.fixture(scope="module", params=tuple(SERVED))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    protocol: str = request.param
    home: Path = tmp_path_factory.mktemp(f"claude-code-{protocol}")
    with serving(protocol, SERVED[protocol], AGENT, home) as s:
        yield s


def claude_code_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": OPUS,
        "max_tokens": 64000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
            {
                "type": "text",
                "text": "You are a Claude agent.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": messages,
        "tools": [TOOL],
        "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }


def reminder_turn(text: str) -> list[dict[str, Any]]:
    """A user turn as Claude Code writes it, then its mid-conversation system message."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\ncontext\n</system-reminder>"},
                {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "system", "content": "Available agent types for the Agent tool: claude"},
    ]


def post(s: Served, body: dict[str, Any], key: str = AGENT_KEY) -> tuple[int, list[Any]]:
    """POST as Claude Code does; the status and the stream's events (or the error body)."""
    req = urllib.request.Request(
        s.gw.url + "/v1/messages?beta=true",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {key}",
            "anthropic-version": "2023-06-01",
            "anthropic-beta": BETAS,
            "x-app": "cli",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            text = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as err:
        return err.code, [json.loads(err.read())]
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    return status, events


def text_of(events: list[Any]) -> str:
    return "".join(
        e["delta"]["text"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
    )


def tool_use_of(events: list[Any]) -> dict[str, Any]:
    start = next(e for e in events if e["type"] == "content_block_start")
    block: dict[str, Any] = start["content_block"]
    parts = [
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    ]
    block["input"] = json.loads("".join(parts) or "{}") or block["input"]
    return block


def test_claude_code_turn_with_a_mid_conversation_system_message(served: Served) -> None:
    status, events = post(served, claude_code_body(reminder_turn("ECHO: hello from claude code")))
    assert status == 200, events
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert text_of(events) == "hello from claude code"
    row = ledger_rows(served.home)[-1]
    assert (row["door"], row["agent"], row["model"]) == (
        "messages",
        "claude-code",
        SERVED[served.protocol],
    )


def test_claude_code_tool_round_trip(served: Served) -> None:
    first = reminder_turn("CALL_TOOL notes.txt")
    status, events = post(served, claude_code_body(first))
    assert status == 200, events
    call = tool_use_of(events)
    assert call["type"] == "tool_use" and call["name"] == "Read"
    assert call["input"] == {"q": "notes.txt"}
    stop = next(e for e in events if e["type"] == "message_delta")
    assert stop["delta"]["stop_reason"] == "tool_use"
    result = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "file contents"},
            {"type": "text", "text": "ECHO: read it"},
        ],
    }
    assistant = {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, call],
    }
    status, events = post(served, claude_code_body([*first, assistant, result]))
    assert status == 200, events
    assert text_of(events) == "read it"


def test_a_refused_claude_code_request_is_logged_by_its_door(served: Served) -> None:
    status, body = post(served, claude_code_body(reminder_turn("hi")), key="qf-" + "x" * 24)
    assert status == 401
    assert body[0]["type"] == "error" and body[0]["error"]["type"] == "authentication_error"
    assert wait_for(lambda: "status=401" in served.gw.output)
    line = next(ln for ln in served.gw.lines if "status=401" in ln)
    assert "door=messages" in line
