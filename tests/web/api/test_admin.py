"""Administration over HTTP: ``POST /api/agents`` never replaces an agent — against a real
app and a SQLite ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.testing import config
from tests.web.app_client import AppClient, served_app

BUDGET = {"metric": "tokens", "window": "day", "amount": 300}
BOT1 = {"name": "bot1", "budgets": [BUDGET], "max_tokens_per_request": 50}


class Api(AppClient):
    async def agent(self, name: str) -> dict[str, Any]:
        status, listed = await self.call("GET", "/api/agents")
        assert status == 200, listed
        return next(a for a in listed["agents"] if a["name"] == name)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    cfg = config({
        "providers": [{"name": "openai", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1",
                       "models": ["gpt-4o-mini"], "keys": [{"id": "openai-1", "secret": "sk-adm-0001"}]}],
        "agents": [{"name": "imperium"}],
    })  # fmt: skip
    async with served_app(cfg, tmp_path / "home", Api) as api:
        yield api


async def test_posting_an_existing_agent_name_is_refused_and_keeps_the_agent(api: Api) -> None:
    status, created = await api.call("POST", "/api/agents", BOT1)
    assert status == 201, created
    key = created["api_key"]
    before = await api.agent("bot1")
    status, out = await api.call("POST", "/api/agents", {"name": "bot1"})
    assert status == 409, out
    assert out["success"] is False and out["error"] == "agent_exists"
    assert "exists already" in out["message"] and "DELETE /api/agents/bot1" in out["message"]
    assert "api_key" not in out
    after = await api.agent("bot1")
    assert after == before and after["max_tokens_per_request"] == 50
    assert after["budgets"] == [{**BUDGET, "provider": None}]
    status, usage = await api.call("GET", "/api/token-usage/ai/bot1", token=key)
    assert status == 200, usage  # the old key still works
    assert usage["max_tokens_per_request"] == 50 and len(usage["budgets"]) == 1


async def test_an_agent_of_the_config_file_is_refused_with_409(api: Api) -> None:
    status, out = await api.call("POST", "/api/agents", {"name": "imperium"})
    assert status == 409 and out["success"] is False, out
    assert out["error"] == "configured_agent" and "configuration file" in out["message"]


async def test_concurrent_creates_of_one_name_have_one_winner(api: Api) -> None:
    bodies = [{**BOT1, "max_tokens_per_request": 10 + i} for i in range(5)]
    answers = await asyncio.gather(*(api.call("POST", "/api/agents", b) for b in bodies))
    statuses = sorted(s for s, _ in answers)
    assert statuses == [201, 409, 409, 409, 409], answers
    ((_, won),) = [a for a in answers if a[0] == 201]
    cap = won["agent"]["max_tokens_per_request"]
    assert (await api.agent("bot1"))["max_tokens_per_request"] == cap
    status, _ = await api.call("GET", "/api/token-usage/ai/bot1", token=won["api_key"])
    assert status == 200


async def test_delete_then_create_changes_an_agent_and_revokes_the_old_key(api: Api) -> None:
    _, first = await api.call("POST", "/api/agents", BOT1)
    assert (await api.call("DELETE", "/api/agents/bot1"))[0] == 200
    status, second = await api.call("POST", "/api/agents", {"name": "bot1"})
    assert status == 201, second
    assert (await api.agent("bot1"))["budgets"] == []
    assert (await api.call("GET", "/api/token-usage/ai/bot1", token=first["api_key"]))[0] == 401
    assert (await api.call("GET", "/api/token-usage/ai/bot1", token=second["api_key"]))[0] == 200


async def test_the_openapi_description_documents_the_refusal(api: Api) -> None:
    status, spec = await api.call("GET", "/openapi.json", token=None)
    assert status == 200
    refused = spec["paths"]["/api/agents"]["post"]["responses"].get("409")
    assert refused is not None and "never replaced" in refused["description"]
