"""What the fake model writes when asked for JSON: the smallest value a schema accepts.

Agents ask for JSON to route, classify or summarise (Gemini CLI's model router asks for
``{"complexity_reasoning": …, "complexity_score": …}`` before each turn) and retry until the
answer parses, so a fake that answered words would make them spin. The schema is read in
both spellings the providers take: JSON Schema (``"type": "object"``) and OpenAPI's upper-case
subset (``"type": "OBJECT"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from quotaflow.fake_provider.reply import WORDS

_DEPTH = 8


def instance(schema: Any, depth: int = 0) -> Any:
    """A small value valid under ``schema`` (``{}`` for no schema: JSON mode alone)."""
    if not isinstance(schema, Mapping) or depth > _DEPTH:
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for choice in ("anyOf", "oneOf", "allOf"):
        options = schema.get(choice)
        if isinstance(options, list) and options:
            return instance(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = str(kind or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: instance(sub, depth + 1) for name, sub in props.items()}
    if kind == "array":
        low = schema.get("minItems") or 0
        return [instance(schema.get("items"), depth + 1) for _ in range(int(low))]
    if kind == "integer":
        return int(schema.get("minimum") or 1)
    if kind == "number":
        return float(schema.get("minimum") or 1.0)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return WORDS[0]


def json_text(schema: Any) -> str:
    return orjson.dumps(instance(schema)).decode()


def forced_call(tool: tuple[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """The call a model makes of a required tool: its name and the smallest valid input."""
    if tool is None:
        return None
    name, schema = tool
    args = instance(schema if isinstance(schema, Mapping) else {"type": "object"})
    return name, args if isinstance(args, dict) else {}
