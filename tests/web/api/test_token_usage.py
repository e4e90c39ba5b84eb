"""Seed 003's ``/api/token-usage/summary`` over HTTP: an agent key reads its own usage only,
the admin and loopback callers the whole gateway's — against a real app, a fake provider and
a SQLite ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.fake_provider import running_fake_provider
from quotaflow.testing import config
from tests.web.app_client import AppClient, served_app

BOT, OTHER = "qf-bot-usage-summary-key-0001", "qf-other-usage-summary-key-02"
IDLE = "qf-idle-usage-summary-key-003"
OPENAI_MODEL, GROQ_MODEL = "gpt-4o-mini", "llama-3.1-8b-instant"
USAGE = ("tokens_used", "requests", "cost_usd")


class Api(AppClient):
    async def chat(self, token: str, model: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        url = self.server.make_url("/v1/chat/completions")
        async with self.http.post(url, json=body, headers=self.headers(token)) as r:
            assert r.status == 200, await r.text()

    async def summary(self, token: str | None) -> dict[str, Any]:
        url = self.server.make_url("/api/token-usage/summary")
        async with self.http.get(url, headers=self.headers(token)) as r:
            body = await r.json()
            assert r.status == 200 and body["success"] is True, body
            return dict(body)


def cfg(base_url: str) -> dict[str, Any]:
    return {
        "settings": {"max_wait_s": 0},
        "providers": [
            {"name": "openai", "protocol": "openai", "base_url": base_url, "models": [OPENAI_MODEL],
             "keys": [{"id": "openai-1", "secret": "sk-usage-openai-0001",
                       "limits": [{"metric": "tokens", "window": "day", "amount": 100000}]}]},
            {"name": "groq", "protocol": "openai", "base_url": base_url, "models": [GROQ_MODEL],
             "keys": [{"id": "groq-1", "secret": "gsk-usage-groq-0002",
                       "limits": [{"metric": "tokens", "window": "day", "amount": 50000}]}]},
        ],
        "agents": [{"name": "bot", "key": BOT}, {"name": "other", "key": OTHER},
                   {"name": "idle", "key": IDLE}],
    }  # fmt: skip


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with (
        running_fake_provider(protocol="openai") as fake,
        served_app(config(cfg(fake.base_url)), tmp_path / "home", Api) as a,
    ):
        await a.chat(BOT, OPENAI_MODEL)
        await a.chat(BOT, OPENAI_MODEL)
        await a.chat(OTHER, OPENAI_MODEL)
        await a.chat(OTHER, GROQ_MODEL)  # a provider bot never used
        yield a


def usage(d: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(d[k] for k in USAGE)


async def test_an_agent_key_reads_only_its_own_usage_per_provider(api: Api) -> None:
    everyone = await api.summary("admin")
    mine = await api.summary(BOT)
    assert list(mine["agents"]) == ["bot"] and mine["total"] == mine["agents"]["bot"]
    assert mine["total"]["requests"] == 2 and mine["total"]["tokens_used"] > 0
    assert usage(mine["providers"]["openai"]) == usage(mine["total"])
    assert usage(mine["providers"]["groq"]) == (0, 0, 0)  # other's call, not bot's
    assert mine["providers"]["openai"]["tokens_used"] < everyone["providers"]["openai"]["tokens_used"]  # fmt: skip
    assert "other" not in str(mine)
    for name in ("openai", "groq"):  # the providers' quota columns are the providers' own
        for col in ("quota_total", "usage_percentage", "state"):
            assert mine["providers"][name][col] == everyone["providers"][name][col], (name, col)


async def test_the_admin_and_loopback_callers_read_the_whole_gateway(api: Api) -> None:
    for token in ("admin", None):
        out = await api.summary(token)
        assert set(out["agents"]) == {"bot", "other"}
        assert out["total"]["requests"] == 4
        assert out["providers"]["openai"]["requests"] == 3
        assert out["providers"]["groq"]["requests"] == 1
        assert sum(p["tokens_used"] for p in out["providers"].values()) == out["total"]["tokens_used"]  # fmt: skip


async def test_an_agent_without_usage_reads_zeros_everywhere(api: Api) -> None:
    idle = await api.summary(IDLE)
    assert idle["agents"] == {} and usage(idle["total"]) == (0, 0, 0)
    assert set(idle["providers"]) == {"openai", "groq"}
    assert all(usage(p) == (0, 0, 0) for p in idle["providers"].values()), idle["providers"]


async def test_a_providers_usage_percentage_is_of_the_quota_used_shown_beside_it(api: Api) -> None:
    """``tokens_used`` is the month's use on every key; ``usage_percentage`` is of what counts
    against ``quota_total`` — which the summary shows too, so the figures add up."""
    out = await api.summary("admin")
    for name, p in out["providers"].items():
        assert 0 < p["quota_used"] <= p["tokens_used"], (name, p)
        assert p["usage_percentage"] == pytest.approx(
            100 * p["quota_used"] / p["quota_total"], abs=0.01
        )
