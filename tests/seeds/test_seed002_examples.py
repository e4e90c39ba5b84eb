"""Seed 002's Python examples, verbatim but for the import line (``utils.*`` → ``quotaflow``)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.cli.seed_setup import seed_environment

BASIC = """
from quotaflow import RequestRouter

# Initialize router
router = RequestRouter()

# Make a request (auto-selects best provider)
result = router.make_llm_request(
    prompt="Explain Bitcoin in one sentence.",
    max_tokens=50,
    temperature=0.3
)

print(f"Provider: {result['provider']}")
print(f"Response: {result['response']['text']}")
print(f"Tokens: {result['tokens_used']}")
"""

PREFERRED = """
# Force a specific provider (with fallback)
result = router.make_llm_request(
    prompt="What is cryptocurrency?",
    max_tokens=100,
    preferred_provider="groq"  # Will use Groq if available
)
"""

MONITOR = """
from quotaflow import UsageMonitor

# Create monitor
monitor = UsageMonitor()

# Show full report
monitor.print_usage_report(avg_tokens_per_day=10000)

# Check alerts
monitor.check_alerts()

# Show compact status
monitor.print_compact_report()

# Export report to file
monitor.export_usage_report("usage_report.txt")
"""

NEW_CODE = """
from quotaflow import RequestRouter
router = RequestRouter()
result = router.make_llm_request(
    prompt=your_prompt,
    max_tokens=1000,
    temperature=0.3
)
text = result['response']['text']
"""

BASE_AGENT = """
# In agents/base_agent.py or similar
class BaseAgent:
    def __init__(self):
        from quotaflow import RequestRouter
        self.llm_router = RequestRouter()

    def call_llm(self, prompt, max_tokens=1000):
        result = self.llm_router.make_llm_request(
            prompt=prompt,
            max_tokens=max_tokens
        )
        return result['response']['text']
"""

RESET = """
from quotaflow import APIManager
manager = APIManager()
manager.reset_provider_usage("groq")  # Reset specific provider
"""

EXPORT = """
monitor = UsageMonitor()
monitor.export_usage_report("weekly_report.txt")
"""


def close_gateways(ns: dict) -> None:
    for value in list(ns.values()):
        close = getattr(value, "close", None)
        if callable(close) and type(value).__name__ == "Gateway":
            close()
    ns.clear()
    gc.collect()


def test_seed_002_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with seed_environment(tmp_path, monkeypatch, settings={"strategy": "priority"}):
        ns: dict = {}
        exec(BASIC, ns)
        out = capsys.readouterr().out
        assert "Provider: cohere" in out  # priority 1 (seed 002's order)
        assert "Response: alpha beta" in out
        tokens = ns["result"]["tokens_used"]
        assert f"Tokens: {tokens}" in out and tokens > 0

        exec(PREFERRED, ns)
        assert ns["result"]["provider"] == "groq"
        close_gateways(ns)

        ns = {"your_prompt": "Summarise the news"}
        exec(NEW_CODE, ns)
        assert ns["text"].startswith("alpha")
        exec(BASE_AGENT, ns)
        agent = ns["BaseAgent"]()
        assert agent.call_llm("hello", max_tokens=5) == "alpha beta gamma delta epsilon"
        agent.llm_router.close()
        close_gateways(ns)

        exec(MONITOR, ns)
        out = capsys.readouterr().out
        assert "ESTIMATED LIFESPAN at 10,000 tokens/day" in out
        assert "no alerts" in out
        report = (tmp_path / "usage_report.txt").read_text()
        total = next(ln for ln in report.splitlines() if ln.split()[:1] == ["TOTAL"])
        assert int(total.split()[6]) == ledger_tokens(tmp_path)
        exec(EXPORT, ns)
        assert (tmp_path / "weekly_report.txt").read_text().startswith("quotaflow usage report")

        exec(RESET, ns)
        close_gateways(ns)


def ledger_tokens(home: Path) -> int:
    import sqlite3

    (t,) = (
        sqlite3.connect(home / "data" / "quotaflow.db")
        .execute("SELECT SUM(total_tokens) FROM ledger")
        .fetchone()
    )
    return int(t)
