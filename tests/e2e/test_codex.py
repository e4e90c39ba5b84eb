"""Codex CLI's own request shape (recorded from ``codex exec`` 0.171.0 pointed at a capture
server) through a real ``quotaflow serve`` onto each wire protocol.

What Codex sends that plain SDK calls do not: ``developer`` messages with ids, ``namespace``
tools (a group of functions), a freeform ``custom`` tool with a grammar (``apply_patch``),
hosted tools (``web_search``, ``tool_search``), ``reasoning`` / ``include`` /
``prompt_cache_key`` / ``client_metadata``, ``store: false`` — quotaflow once refused the
whole request with "only function tools are supported, not 'namespace'".
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
from tests.e2e.procs import ledger_rows

pytestmark = pytest.mark.e2e

AGENT_KEY = "qf-codexcli-0123456789abcdef"
PROVIDER_KEY = "sk-codex-0001"
SERVED = {"openai": "gpt-5.5", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Runs a command in a PTY.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"cmd": {"type": "string"}, "q": {"type": "string"}},
            "additionalProperties": False,
        },
    },
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
        "format": {
            "type": "grammar",
            "syntax": "lark",
            "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch"',
        },
    },
    {
        "type": "namespace",
        "name": "multi_agent_v1",
        "description": "Tools for spawning and managing sub-agents.",
        "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object"}}],
    },
    {"type": "tool_search", "execution": "client", "description": "Tool discovery."},
    {"type": "web_search", "external_web_access": False},
]


AGENT = Agent("codex", AGENT_KEY, PROVIDER_KEY)


@pytest.fixture(scope="module", params=tuple(SERVED))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    protocol: str = request.param
    home: Path = tmp_path_factory.mktemp(f"codex-{protocol}")
    with serving(protocol, SERVED[protocol], AGENT, home) as s:
        yield s


def message(role: str, text: str, n: int) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{n}",
        "role": role,
        "content": [{"type": "input_text", "text": text}],
    }


def codex_body(s: Served, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "model": s.model,
        "stream": True,
        "input": [
            message("developer", "You are a coding agent running in the Codex CLI.", 0),
            *items,
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a237db-d987",
        "text": {"verbosity": "low"},
        "client_metadata": {"x-codex-turn-metadata": json.dumps({"sandbox": "seccomp"})},
        **extra,
    }


def post(s: Served, body: dict[str, Any]) -> tuple[int, dict[str, str], list[Any]]:
    req = urllib.request.Request(
        s.gw.url + "/v1/responses",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "accept": "text/event-stream",
            "authorization": f"Bearer {AGENT_KEY}",
            "originator": "codex_exec",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            text, status, headers = resp.read().decode(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), [json.loads(err.read())]
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    return status, headers, events


def done_items(events: list[Any]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def test_codex_turn_with_its_tools(served: Served) -> None:
    status, headers, events = post(
        served, codex_body(served, [message("user", "ECHO: hi codex", 1)])
    )
    assert status == 200, events
    assert headers["x-quotaflow-tools-skipped"] == "tool_search,web_search"
    assert events[-1]["type"] == "response.completed"
    [item] = done_items(events)
    assert item["content"][0]["text"] == "hi codex"
    row = ledger_rows(served.home)[-1]
    assert (row["door"], row["agent"], row["model"]) == ("responses", "codex", served.model)


def test_codex_function_call_round_trip(served: Served) -> None:
    first = [message("user", "CALL_TOOL ls", 1)]
    status, _, events = post(served, codex_body(served, first))
    assert status == 200, events
    [call] = done_items(events)
    assert (call["type"], call["name"], json.loads(call["arguments"])) == (
        "function_call",
        "exec_command",
        {"q": "ls"},
    )
    answer = {"type": "function_call_output", "call_id": call["call_id"], "output": "README.md"}
    later = [*first, {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "e"}]
    later += [call, answer, message("user", "ECHO: listed", 2)]
    status, _, events = post(served, codex_body(served, later))
    assert status == 200, events
    assert done_items(events)[0]["content"][0]["text"] == "listed"


def test_codex_freeform_and_namespaced_calls_come_back_as_codex_reads_them(
    served: Served,
) -> None:
    forced = {"type": "custom", "name": "apply_patch"}
    first = [message("user", "CALL_TOOL *** Begin Patch", 1)]
    status, _, events = post(served, codex_body(served, first, tool_choice=forced))
    assert status == 200, events
    [patch] = done_items(events)
    assert (patch["type"], patch["name"]) == ("custom_tool_call", "apply_patch")
    kinds = [e["type"] for e in events]
    assert "response.custom_tool_call_input.done" in kinds
    assert "response.function_call_arguments.delta" not in kinds
    forced = {"type": "function", "name": "close_agent", "namespace": "multi_agent_v1"}
    status, _, events = post(served, codex_body(served, first, tool_choice=forced))
    assert status == 200, events
    [close] = done_items(events)
    assert (close["type"], close["namespace"], close["name"]) == (
        "function_call",
        "multi_agent_v1",
        "close_agent",
    )
    answers = [
        {"type": "custom_tool_call_output", "call_id": patch["call_id"], "output": "Done!"},
        {"type": "function_call_output", "call_id": close["call_id"], "output": "closed"},
    ]
    history = [*first, patch, close, *answers, message("user", "ECHO: patched", 2)]
    status, _, events = post(served, codex_body(served, history))
    assert status == 200, events
    assert done_items(events)[0]["content"][0]["text"] == "patched"
