"""Seed 003's Python example, verbatim but for the import line."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from tests.cli.seed_setup import seed_environment

EXAMPLE = """
from quotaflow import unified_ai_service

# Call AI with automatic provider selection
response, provider_info = await unified_ai_service.call_ai(
    prompt="Analyze this code for security vulnerabilities",
    ai_name="guardian"
)

print(f"Provider used: {provider_info['provider']}")
print(f"Reason: {provider_info['reason']}")
print(f"Response: {response}")
"""

AGENTS = [{
    "name": "guardian",
    "providers": ["anthropic", "openai"],  # primary → fallback (seed 003)
    "switch_threshold": 0.95,
}]  # fmt: skip


def test_seed_003_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from quotaflow import unified_ai_service

    with seed_environment(tmp_path, monkeypatch, agents=AGENTS):
        ns: dict = {}
        exec(
            "async def example():\n"
            + textwrap.indent(EXAMPLE, "    ")
            + "\n    return response, provider_info",
            ns,
        )
        try:
            response, info = asyncio.run(ns["example"]())
        finally:
            unified_ai_service.close()
    out = capsys.readouterr().out
    assert "Provider used: anthropic" in out
    assert "Reason: primary_available" in out
    assert f"Response: {response}" in out and response.startswith("alpha")
    assert info["ai_name"] == "guardian"
