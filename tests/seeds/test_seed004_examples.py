"""Seed 004's examples (JavaScript in the seed) in Python: the same calls, snake_case names,
``new APIManager()`` → ``APIManager()``; only the import line is new."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.seed_setup import seed_environment

EXAMPLE = """
from quotaflow import APIManager

api_manager = APIManager()
result = api_manager.call_with_fallback(context)

# Task was successful and high quality
api_manager.update_quality_score('groq', 'llama-3.3-70b-versatile', 1, 0.95)

# Task was mediocre
api_manager.update_quality_score('openrouter', 'claude-3-haiku', 1, 0.60)

summary = api_manager.session_summary()
print(summary)
"""


def test_seed_004_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with seed_environment(tmp_path, monkeypatch, settings={"strategy": "priority"}):
        ns: dict = {"context": "Write the next step of the plan."}
        exec(EXAMPLE, ns)
        api_manager = ns["api_manager"]
        try:
            summary = ns["summary"]
            assert set(summary) == {
                "requests",
                "successes",
                "failures",
                "totalTokens",
                "successRate",
            }
            assert (
                summary["requests"] == 1
                and summary["successes"] == 1
                and summary["successRate"] == 1.0
            )
            assert summary["totalTokens"] == ns["result"]["usage"]["total_tokens"]
            assert str(summary) in capsys.readouterr().out
            stats = api_manager.api_stats()["providers"]
            groq = [
                m["llama-3.3-70b-versatile"]
                for m in (p["models"] for p in stats.values())
                if "llama-3.3-70b-versatile" in m
            ]
            assert [g["qualityScore"] for g in groq] == [
                0.95,
                0.95,
            ]  # never used: every key of groq
            assert all(
                set(g)
                >= {
                    "status",
                    "avgResponseTime",
                    "successCount",
                    "failCount",
                    "totalTokensUsed",
                    "qualityScore",
                    "lastSuccess",
                    "lastError",
                }
                for g in groq
            )
        finally:
            api_manager.close()
