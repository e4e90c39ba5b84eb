"""The Responses door's tools as chat-completions functions, and the model's calls back.

Agents such as Codex CLI send more than ``function`` tools:

* ``namespace`` — a named group of function (or custom) tools. Each becomes a chat function
  ``<namespace>__<name>``; the model's call comes back as a ``function_call`` item with its
  ``namespace`` and plain ``name``.
* ``custom`` — a freeform tool whose input is raw text (optionally held to a grammar, as
  Codex's ``apply_patch``). It becomes a function taking one string, ``input``, whose
  description carries the grammar; the call comes back as a ``custom_tool_call`` with that
  text as ``input``.
* hosted tools (``web_search``, ``file_search``, ``code_interpreter``, ``tool_search``, …) run
  on OpenAI's side, which a translated request does not reach: they are left out and named in
  the answer's ``x-quotaflow-tools-skipped`` header; a ``tool_choice`` that requires one is
  refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from quotaflow.errors import BadRequest

SEPARATOR = "__"
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CUSTOM_INPUT = "input"


@dataclass(frozen=True, slots=True)
class ToolName:
    """What the Responses API calls a tool the chat model knows as one flat name."""

    name: str
    namespace: str | None = None
    custom: bool = False


def _flat(namespace: str, name: str) -> str:
    flat = f"{namespace}{SEPARATOR}{name}"
    if _NAME_OK.match(flat):
        return flat
    digest = hashlib.sha1(flat.encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", flat)
    return f"{safe[:55]}_{digest}"


def _custom_parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    fmt = tool.get("format")
    about = "The tool's whole input, as raw text (not JSON)."
    if isinstance(fmt, Mapping) and fmt.get("type") == "grammar":
        about += (
            f" It must follow this {fmt.get('syntax') or 'lark'} grammar:\n"
            f"{fmt.get('definition') or ''}"
        )
    return {
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": about}},
        "required": [CUSTOM_INPUT],
        "additionalProperties": False,
    }


def _function(name: str, tool: Mapping[str, Any], custom: bool) -> dict[str, Any]:
    fn: dict[str, Any] = {
        "name": name,
        "parameters": _custom_parameters(tool)
        if custom
        else tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        fn["description"] = tool["description"]
    if not custom and tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


@dataclass
class Toolset:
    """The request's tools, flattened for the chat model, with the way back for its calls."""

    chat_tools: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _names: dict[str, ToolName] = field(default_factory=dict)  # flat name → Responses name
    _flats: dict[tuple[str | None, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Any) -> Toolset:
        out = cls()
        if tools is None:
            return out
        if not isinstance(tools, Sequence) or isinstance(tools, str):
            raise BadRequest("'tools' must be a list", param="tools")
        for tool in tools:
            if not isinstance(tool, Mapping):
                raise BadRequest("every tool must be an object", param="tools")
            out._add(tool, None)
        return out

    def _add(self, tool: Mapping[str, Any], namespace: str | None) -> None:
        kind = tool.get("type")
        if kind == "namespace" and namespace is None:
            name = tool.get("name")
            inner = tool.get("tools")
            if not isinstance(name, str) or not name or not isinstance(inner, Sequence):
                raise BadRequest("a namespace tool needs a name and a list of tools", param="tools")
            for member in inner:
                if not isinstance(member, Mapping) or member.get("type") not in (
                    "function",
                    "custom",
                ):
                    raise BadRequest(
                        f"namespace {name!r} may hold function and custom tools only",
                        param="tools",
                    )
                self._add(member, name)
            return
        if kind not in ("function", "custom"):
            self.skipped.append(str(kind))
            return
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"every {kind} tool needs a name", param="tools")
        flat = name if namespace is None else _flat(namespace, name)
        custom = kind == "custom"
        self._names[flat] = ToolName(name, namespace, custom)
        self._flats[(namespace, name)] = flat
        self.chat_tools.append(_function(flat, tool, custom))

    # -- the request's history ---------------------------------------------------------

    def chat_name(self, name: str, namespace: Any = None) -> str:
        ns = namespace if isinstance(namespace, str) and namespace else None
        return self._flats.get((ns, name)) or (name if ns is None else _flat(ns, name))

    def choice(self, choice: Any) -> Any:
        """``tool_choice`` for the chat model."""
        if isinstance(choice, str):
            return choice
        if not isinstance(choice, Mapping):
            raise BadRequest(f"unsupported tool_choice {choice!r}", param="tool_choice")
        kind = choice.get("type")
        if kind in ("function", "custom"):
            name = self.chat_name(str(choice.get("name") or ""), choice.get("namespace"))
            return {"type": "function", "function": {"name": name}}
        raise BadRequest(
            f"tool_choice {kind!r} needs a hosted tool, which this gateway cannot run",
            param="tool_choice",
        )

    # -- the model's calls -------------------------------------------------------------

    def name_of(self, flat: str) -> ToolName:
        return self._names.get(flat) or ToolName(flat)

    def call_item(
        self, call_id: str, flat: str, arguments: str, status: str = "completed"
    ) -> dict[str, Any]:
        """The output item for the chat model's call of ``flat`` with ``arguments``."""
        tool = self.name_of(flat)
        item: dict[str, Any]
        if tool.custom:
            item = {
                "type": "custom_tool_call",
                "id": f"ctc_{call_id}",
                "call_id": call_id,
                "name": tool.name,
                "input": custom_input(arguments) if status == "completed" else "",
                "status": status,
            }
        else:
            item = {
                "type": "function_call",
                "id": f"fc_{call_id}",
                "call_id": call_id,
                "name": tool.name,
                "arguments": arguments,
                "status": status,
            }
        if tool.namespace is not None:
            item["namespace"] = tool.namespace
        return item


def custom_input(arguments: str) -> str:
    """A freeform tool's text from the chat model's ``{"input": …}`` arguments (the raw
    arguments when the model wrote something else)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, Mapping) and isinstance(value.get(CUSTOM_INPUT), str):
        return str(value[CUSTOM_INPUT])
    return arguments


def custom_arguments(text: Any) -> str:
    """A ``custom_tool_call``'s input as the chat model's function arguments."""
    return orjson.dumps({CUSTOM_INPUT: text if isinstance(text, str) else ""}).decode()
