"""SQL pieces both ledgers share (written with ``?`` placeholders; the PostgreSQL ledger
converts them): which rows a limit scope counts, a time span, group labels."""

from __future__ import annotations

from typing import Any


def scope_condition(scope: str) -> tuple[str, tuple[Any, ...]]:
    """SQL condition selecting the ledger rows that count against a limit scope."""
    if scope == "global":
        return "1=1", ()
    kind, _, name = scope.partition(":")
    column = {"key": "key_id", "agent": "agent", "route": "route", "provider": "provider"}.get(kind)
    if column is None:
        raise ValueError(f"unknown limit scope {scope!r}")
    if kind == "agent":
        # An agent's budget and its provider order: "agent:bob" or "agent:bob@openai".
        agent, _, provider = name.partition("@")
        if provider:
            return "agent=? AND provider=?", (agent, provider)
    return f"{column}=?", (name,)


def span(cond: str, since: float | None, until: float | None) -> tuple[str, tuple[Any, ...]]:
    """``cond`` narrowed to ``since <= ts < until`` (either bound optional)."""
    parts, params = [cond], []
    if since is not None:
        parts.append("ts>=?")
        params.append(since)
    if until is not None:
        parts.append("ts<?")
        params.append(until)
    return " AND ".join(parts), tuple(params)


def group_text(value: Any) -> str:
    """A group's label: a time slot (a whole float) without its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
