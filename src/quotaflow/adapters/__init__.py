"""Adapters, one per wire protocol (not per provider), found by name."""

from __future__ import annotations

from quotaflow.adapters.base import Adapter
from quotaflow.adapters.openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {"openai": OpenAIAdapter()}


def register(adapter: Adapter) -> None:
    ADAPTERS[adapter.protocol] = adapter


def adapter_for(protocol: str) -> Adapter:
    try:
        return ADAPTERS[protocol]
    except KeyError:
        raise LookupError(f"no adapter for protocol {protocol!r}") from None


def _load_optional() -> None:
    # Anthropic and Gemini adapters live in their own modules; import them when present.
    import importlib

    for name in ("anthropic", "gemini"):
        try:
            mod = importlib.import_module(f"quotaflow.adapters.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"quotaflow.adapters.{name}":
                raise
            continue
        register(mod.ADAPTER)


_load_optional()
