"""One status, told the same by every surface at the same moment: ``/api/health``,
``/api/status`` (and ``quotaflow status``), the dashboard's status and the emergency status —
against a real app, a fake provider and a SQLite ledger.

The rule: the gateway is healthy while every key can serve, degraded (``warning``) while
some cannot, critical when none can. Agents at their own budgets do not move it; the
emergency status tells them apart, agent by agent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.cli.status import local_status
from quotaflow.fake_provider import FakeProviderHandle, KeyState, running_fake_provider
from quotaflow.testing import config
from tests.web.app_client import AppClient, served_app

SECRETS = {
    "alpha": "sk-one-status-alpha-0001",
    "bravo": "sk-one-status-bravo-0002",
    "charlie": "sk-one-status-charlie-0003",
}
# Each surface's words for the one level.
LEVEL = {"healthy": "ok", "ok": "ok", "warning": "warning", "degraded": "warning"}
LEVEL["critical"] = "critical"


class Api(AppClient):
    async def get(self, path: str) -> Any:
        status, body = await self.call("GET", path)
        assert status == 200, (path, body)
        return body

    async def chat(self, key: str | None = None) -> tuple[int, Any]:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        return await self.call("POST", "/v1/chat/completions", body, token=key)

    async def disable(self, key_id: str) -> None:
        status, body = await self.call("POST", f"/api/keys/{key_id}/disable", {})
        assert status == 200, body


def cfg(base_url: str, bravo_requests: int | None) -> dict[str, Any]:
    """Three keys of 100k tokens a day, tried in order; bravo also counts its requests."""
    keys = [
        {"id": name, "secret": secret, "priority": i,
         "limits": [{"metric": "tokens", "window": "day", "amount": 100_000}]}
        for i, (name, secret) in enumerate(SECRETS.items())
    ]  # fmt: skip
    if bravo_requests is not None:
        keys[1]["limits"].append({"metric": "requests", "window": "day", "amount": bravo_requests})
    return {
        "settings": {"max_wait_s": 0, "strategy": "priority"},
        "providers": [
            {"name": "openai", "protocol": "openai", "base_url": base_url,
             "models": ["gpt-4o-mini"], "keys": keys},
        ],
    }  # fmt: skip


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderHandle]:
    keys = {secret: KeyState() for secret in SECRETS.values()}
    async with running_fake_provider(protocol="openai", keys=keys) as handle:
        yield handle


@pytest.fixture
async def api(tmp_path: Path, fake: FakeProviderHandle) -> AsyncIterator[Api]:
    async with served_app(config(cfg(fake.base_url, None)), tmp_path / "home", Api) as a:
        yield a


@pytest.fixture
async def small_bravo(tmp_path: Path, fake: FakeProviderHandle) -> AsyncIterator[Api]:
    async with served_app(config(cfg(fake.base_url, 2)), tmp_path / "home", Api) as a:
        yield a


async def agents_at_their_budgets(api: Api, *names: str) -> None:
    """Each agent gets small budgets, then uses them until it is refused."""
    budgets = [
        {"metric": "tokens", "window": "day", "amount": 40},
        {"metric": "requests", "window": "day", "amount": 1},
    ]
    for name in names:
        status, out = await api.call("POST", "/api/agents", {"name": name, "budgets": budgets})
        assert status == 201, out
        codes = [(await api.chat(out["api_key"]))[0] for _ in range(3)]
        assert codes == [200, 429, 429], codes


async def surfaces(api: Api) -> dict[str, Any]:
    """What each surface says now."""
    health = await api.get("/api/health")
    status = await api.get("/api/status")
    dashboard = await api.get("/api/dashboard")
    emergency = await api.get("/api/token-usage/emergency-status")
    cli = await local_status(api.mg)  # `quotaflow status` on the same data folder
    return {
        "health": health,
        "status": status,
        "cli": cli,
        "dashboard": dashboard["status"],
        "emergency": emergency,
    }


def levels(seen: dict[str, Any]) -> dict[str, str]:
    return {
        "/api/health": LEVEL[seen["health"]["status"]],
        "/api/status": LEVEL[seen["status"]["health"]["status"]],
        "quotaflow status": LEVEL[seen["cli"]["health"]["status"]],
        "dashboard": seen["dashboard"]["level"],
    }


def assert_one_story(seen: dict[str, Any], level: str, emergency: str) -> None:
    assert levels(seen) == dict.fromkeys(levels(seen), level)
    assert seen["cli"]["health"] == seen["status"]["health"]
    assert seen["emergency"]["status"] == emergency
    assert seen["dashboard"]["emergency"] == emergency  # the Emergency tile
    assert seen["dashboard"]["emergency_message"] == seen["emergency"]["message"]
    if level != "ok":  # one message: the same words on every surface
        message = seen["health"]["message"]
        assert seen["status"]["health"]["message"] == message
        assert seen["dashboard"]["message"].startswith(message)
        assert seen["emergency"]["message"] == message


async def test_agents_at_their_own_budgets_leave_a_serving_gateway_healthy(api: Api) -> None:
    await agents_at_their_budgets(api, "scout", "scribe")
    seen = await surfaces(api)
    assert_one_story(seen, "ok", "normal")
    assert seen["status"]["health"] == {"status": "healthy", "message": "All providers operational"}
    # the emergency status tells the agents apart
    assert set(seen["emergency"]["agents"]) == {"scout", "scribe"}
    assert seen["emergency"]["agents"] == {"scout": "emergency", "scribe": "emergency"}
    assert {b["agent"] for b in seen["emergency"]["budgets"]} == {"scout", "scribe"}


async def test_a_disabled_key_and_agents_at_their_budgets_one_warning(api: Api) -> None:
    await api.disable("alpha")
    await agents_at_their_budgets(api, "scout", "scribe")
    seen = await surfaces(api)
    assert_one_story(seen, "warning", "warning")
    assert seen["health"]["message"] == "2 of 3 keys can serve (1 disabled)"
    assert (seen["health"]["keys"], seen["health"]["keys_usable"]) == (3, 2)
    assert seen["status"]["health"]["status"] == "degraded"
    openai = seen["status"]["providers"][0]
    assert (openai["state"], openai["available"], openai["reason"]) == ("ok", True, None)
    alpha = next(k for k in openai["keys"] if k["key_id"] == "alpha")
    assert (alpha["state"], alpha["available"]) == ("disabled", False)


async def test_a_depleted_key_beside_a_disabled_one_is_not_healthy(small_bravo: Api) -> None:
    api = small_bravo
    await api.disable("alpha")
    codes = [(await api.chat())[0] for _ in range(3)]  # bravo serves two, then charlie
    assert codes == [200, 200, 200], codes
    seen = await surfaces(api)
    bravo = next(k for k in seen["status"]["providers"][0]["keys"] if k["key_id"] == "bravo")
    assert bravo["available"] is False and bravo["reason"].startswith("quota used up")
    assert_one_story(seen, "warning", "warning")
    assert seen["health"]["message"] == "1 of 3 keys can serve (1 disabled, 1 out of quota)"


async def test_a_provider_with_every_key_disabled_or_invalid_says_so(
    api: Api, fake: FakeProviderHandle
) -> None:
    assert fake.state.config.keys is not None
    fake.state.config.keys[SECRETS["bravo"]].invalid = True
    await api.disable("alpha")
    await api.disable("charlie")
    status, body = await api.chat()  # bravo answers 401 and is marked invalid
    assert status >= 400, body
    seen = await surfaces(api)
    assert_one_story(seen, "critical", "emergency")
    assert seen["health"]["message"] == "No key can serve (2 disabled, 1 rejected by the provider)"
    openai = seen["status"]["providers"][0]
    assert (openai["state"], openai["available"]) == ("disabled", False)
    assert openai["remaining"] > 0  # quota is left: it is not a quota matter
    assert "alpha: disabled by an operator" in openai["reason"]
    assert "bravo: invalid: " in openai["reason"]
    assert [k["state"] for k in openai["keys"]] == ["disabled", "invalid", "disabled"]


async def test_a_provider_whose_only_serving_key_cools_down_reads_cooling_not_depleted(
    api: Api, fake: FakeProviderHandle
) -> None:
    """A key rate limited for a few seconds is not out of quota: a provider whose other keys
    are disabled and whose last one cools down says so (the dashboard's picture showed
    DEPLETED at 42 % used)."""
    from quotaflow.fake_provider.faults import Fault

    await api.disable("alpha")
    await api.disable("charlie")
    fake.state.faults.add(Fault(kind="status", key=SECRETS["bravo"], status=429, retry_after=30))
    status, body = await api.chat()
    assert status == 429, body
    seen = await surfaces(api)
    openai = seen["status"]["providers"][0]
    assert (openai["state"], openai["available"]) == ("cooling", False)
    assert openai["remaining"] > 0
    assert "bravo: " in openai["reason"] and "rate limited" in openai["reason"]
