"""Adapters, one per wire protocol (not per provider), found by name.

The OpenAI adapter is always loaded; the others are imported the first time their protocol
is asked for (the gateway asks for every configured provider's at start), so a server that
speaks only OpenAI's protocol never loads them.
"""

from __future__ import annotations

import importlib
from typing import Final, Literal

from quotaflow.adapters.base import Adapter
from quotaflow.adapters.openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {"openai": OpenAIAdapter()}
BUILT_IN: Final[tuple[Literal["openai", "anthropic", "gemini"], ...]] = (
    "openai",
    "anthropic",
    "gemini",
)


def register(adapter: Adapter) -> None:
    ADAPTERS[adapter.protocol] = adapter


def adapter_for(protocol: str) -> Adapter:
    try:
        return ADAPTERS[protocol]
    except KeyError:
        pass
    if protocol in BUILT_IN:
        register(importlib.import_module(f"quotaflow.adapters.{protocol}").ADAPTER)
        return ADAPTERS[protocol]
    raise LookupError(f"no adapter for protocol {protocol!r}")
