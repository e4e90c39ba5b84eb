"""``quotaflow.Gateway`` / ``AsyncGateway``: the engine in-process, against the fake provider."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quotaflow
from quotaflow import AsyncGateway, Gateway, QuotaExhausted
from quotaflow.errors import BadRequest
from quotaflow.fake_provider import FakeProviderConfig, KeyState
from quotaflow.fake_provider.server import FakeProviderHandle
from tests.cli.fakes import fake_in_thread, provider_config


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderHandle]:
    keys = {s: KeyState() for s in ("g1", "g2", "c1", "o1")} | {"dead": KeyState(invalid=True)}
    with fake_in_thread(FakeProviderConfig(protocol="openai", keys=keys)) as f:
        yield f


def two_providers(url: str, **extra: Any) -> dict[str, Any]:
    lim = [{"metric": "tokens", "window": "month", "amount": 100000}]
    return {
        "providers": [
            provider_config("cohere", url, ["c1"], ["command-r"], key_limits=lim, priority=1),
            provider_config(
                "groq", url, ["g1", "g2"], ["llama-3.3-70b-versatile"], key_limits=lim, priority=3
            ),
        ],
        "settings": {"strategy": "priority"},
        **extra,
    }


def test_all_is_honest() -> None:
    assert sorted(quotaflow.__all__) == sorted(["__version__", *quotaflow._EXPORTS])
    for name in quotaflow.__all__:
        assert getattr(quotaflow, name) is not None, name
    assert quotaflow.RequestRouter is quotaflow.Gateway is quotaflow.APIManager
    with pytest.raises(AttributeError):
        quotaflow.NoSuchThing  # noqa: B018


def test_make_llm_request_seed_002_shape(fake: FakeProviderHandle, tmp_path: Path) -> None:
    with Gateway(two_providers(fake.base_url), home=tmp_path) as gw:
        result = gw.make_llm_request(
            prompt="Explain Bitcoin in one sentence.", max_tokens=50, temperature=0.3
        )
        assert result["success"] is True
        assert result["provider"] == "cohere"  # priority 1 first (seed 002)
        assert result["response"]["text"].startswith("alpha beta")
        assert result["tokens_used"] == result["prompt_tokens"] + result["completion_tokens"] > 0
        preferred = gw.make_llm_request(
            prompt="What is cryptocurrency?", max_tokens=100, preferred_provider="groq"
        )
        assert preferred["provider"] == "groq"
    rows = (
        sqlite3.connect(tmp_path / "quotaflow.db")
        .execute("SELECT provider, total_tokens FROM ledger")
        .fetchall()
    )
    assert rows == [("cohere", result["tokens_used"]), ("groq", preferred["tokens_used"])]


def test_failures_come_back_as_success_false(fake: FakeProviderHandle, tmp_path: Path) -> None:
    cfg = {"providers": [provider_config("groq", fake.base_url, ["dead"], ["m"])]}
    with Gateway(cfg, home=tmp_path) as gw:
        result = gw.make_llm_request(prompt="hi")
        assert result["success"] is False
        assert result["response"]["text"] == ""
        assert "auth" in str(result["attempts"])
        with pytest.raises(BadRequest):
            gw.make_llm_request(prompt="")
        assert gw.session_summary() == {
            "requests": 1,
            "successes": 0,
            "failures": 1,
            "totalTokens": 0,
            "successRate": 0.0,
        }


def test_chat_openai_shape_and_quality_feedback(fake: FakeProviderHandle, tmp_path: Path) -> None:
    with Gateway(two_providers(fake.base_url), home=tmp_path) as gw:
        body = gw.chat(
            [{"role": "user", "content": "ECHO: hello"}],
            model="llama-3.3-70b-versatile",
            max_tokens=20,
        )
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == "hello"
        info = body["quotaflow"]
        assert info["provider"] == "groq" and info["attempts"] == 1
        gw.update_quality_score("groq", "llama-3.3-70b-versatile", 1, 0.95)
        gw.update_quality_score("groq", "llama-3.3-70b-versatile", True, 0.55)
        stats = gw.api_stats()["providers"][info["key"]]["models"]["llama-3.3-70b-versatile"]
        assert stats["qualityScore"] == pytest.approx(0.75)
        assert stats["successCount"] == 1 and stats["status"] == "working"
        with pytest.raises(BadRequest, match="between 0 and 1"):
            gw.update_quality_score("groq", "llama-3.3-70b-versatile", 1, 1.5)
        summary = gw.session_summary()
        assert summary == {
            "requests": 1,
            "successes": 1,
            "failures": 0,
            "totalTokens": summary["totalTokens"],
            "successRate": 1.0,
        }


def test_call_ai_follows_the_agents_provider_order(
    fake: FakeProviderHandle, tmp_path: Path
) -> None:
    cfg = two_providers(
        fake.base_url, agents=[{"name": "guardian", "providers": ["groq", "cohere"]}]
    )
    with Gateway(cfg, home=tmp_path) as gw:
        text, info = gw.call_ai(
            "Analyze this code for security vulnerabilities", ai_name="guardian"
        )
        assert text.startswith("alpha")
        assert info["provider"] == "groq"
        assert info["reason"] == "primary_available"
        _, anon = gw.call_ai("hi", ai_name="someone")
        assert anon["reason"] == "optimal_selection" and anon["provider"] == "cohere"
    agents = (
        sqlite3.connect(tmp_path / "quotaflow.db")
        .execute("SELECT DISTINCT agent FROM ledger ORDER BY agent")
        .fetchall()
    )
    assert agents == [("guardian",), ("someone",)]


def test_call_ai_raises_when_nothing_can_answer(fake: FakeProviderHandle, tmp_path: Path) -> None:
    cfg = {
        "providers": [
            provider_config(
                "openai",
                fake.base_url,
                ["o1"],
                ["gpt"],
                key_limits=[{"metric": "tokens", "window": "once", "amount": 5}],
            )
        ]
    }
    with Gateway(cfg, home=tmp_path) as gw, pytest.raises(QuotaExhausted):
        gw.call_ai("a prompt far longer than five tokens of quota", ai_name="imperium")


async def test_awaitable_twins_and_async_gateway(fake: FakeProviderHandle, tmp_path: Path) -> None:
    gw = Gateway(two_providers(fake.base_url), home=tmp_path / "a")
    try:
        results = await asyncio.gather(
            *(gw.amake_llm_request(prompt=f"q{i}", max_tokens=10) for i in range(4))
        )
        assert all(r["success"] for r in results)
        _, info = await gw.acall_ai("hi", ai_name="x")
        assert info["provider"] == "cohere"
    finally:
        gw.close()
    async with AsyncGateway(two_providers(fake.base_url), home=tmp_path / "b") as agw:
        body = await agw.chat([{"role": "user", "content": "hi"}])
        assert body["quotaflow"]["provider"] == "cohere"
        assert agw.session_summary()["requests"] == 1


def test_config_sources(
    fake: FakeProviderHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    path = tmp_path / "qf.yaml"
    path.write_text(yaml.safe_dump(two_providers(fake.base_url)))
    monkeypatch.setenv("QUOTAFLOW_CONFIG", str(path))
    monkeypatch.setenv("QUOTAFLOW_HOME", str(tmp_path / "home"))
    with Gateway() as gw:
        assert sorted(gw.config.providers) == ["cohere", "groq"]
    assert (tmp_path / "home" / "quotaflow.db").exists()
    monkeypatch.delenv("QUOTAFLOW_CONFIG")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROQ_API_KEY", "g1")
    monkeypatch.setenv("GROQ_BASE_URL", fake.base_url)
    with Gateway.from_env(home=tmp_path / "env") as gw:
        assert list(gw.config.providers) == ["groq"]
        assert gw.make_llm_request(prompt="hi", max_tokens=5)["provider"] == "groq"


def test_the_module_example_runs_with_the_keys_it_configures(
    fake: FakeProviderHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example atop ``quotaflow.library.gateway``, verbatim, with only an OpenAI key in
    the environment (no ./quotaflow.yaml): every call in it works."""
    import quotaflow.library.gateway as module

    doc = module.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].splitlines()
    example = "\n".join(itertools.takewhile(lambda line: not line or line[0] == " ", block))
    monkeypatch.chdir(tmp_path)
    for name in ("QUOTAFLOW_CONFIG", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "o1")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("QUOTAFLOW_HOME", str(tmp_path / "home"))
    assert "with Gateway() as gw:" in example and "update_quality_score" in example
    names: dict[str, Any] = {}
    exec(compile(textwrap.dedent(example), "example", "exec"), names)
    assert (names["result"]["success"], names["result"]["provider"]) == (True, "openai")
