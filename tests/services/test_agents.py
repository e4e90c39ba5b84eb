"""Agents: limits from the spec, provider order with the switch threshold, token cap, registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotaflow.config.schema import AgentSpec
from quotaflow.errors import BadRequest
from quotaflow.services.agents import (
    Agent,
    AgentRegistry,
    agent_limits,
    apply_token_cap,
    pick_provider,
)
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock

IMPERIUM = AgentSpec.model_validate({
    "name": "imperium",
    "budgets": [
        {"metric": "tokens", "window": "month", "amount": 140000, "provider": "anthropic"},
        {"metric": "tokens", "window": "month", "amount": 9000, "provider": "openai"},
    ],
    "providers": ["anthropic", "openai"],
    "requests_per_minute": 42, "requests_per_day": 3400, "max_tokens_per_request": 17000,
})  # fmt: skip


def agent(spec: AgentSpec = IMPERIUM) -> Agent:
    return Agent(spec, None, "config", agent_limits(spec))


def test_seed_003_limits() -> None:
    assert sorted(lim.id for lim in agent_limits(IMPERIUM)) == [
        "agent:imperium/requests/day",
        "agent:imperium/requests/rolling 60s",
        "agent:imperium@anthropic/tokens/month",
        "agent:imperium@openai/tokens/month",
    ]


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ({"anthropic": 0.0, "openai": 0.0}, ("anthropic", "primary_available")),
        ({"anthropic": 0.9499, "openai": 0.5}, ("anthropic", "primary_available")),
        ({"anthropic": 0.95, "openai": 0.5}, ("openai", "fallback_threshold_reached")),
        ({"anthropic": 0.99, "openai": 0.999}, ("openai", "fallback_threshold_reached")),
        ({"anthropic": 1.0, "openai": 1.0}, (None, "all_exhausted")),
    ],
)
def test_primary_then_fallback_at_95_percent(shares: dict[str, float], expected: tuple) -> None:
    pick = pick_provider(agent(), shares)
    assert (pick.provider, pick.reason) == expected


def test_token_cap_refuses_more_and_fills_a_missing_max_tokens() -> None:
    body: dict = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    apply_token_cap(agent(), body)
    assert body["max_tokens"] == 1024  # seed 003's OPENAI_MAX_TOKENS, within the cap
    with pytest.raises(BadRequest, match="17000"):
        apply_token_cap(agent(), {**body, "max_tokens": 17000})
    huge = {"model": "auto", "messages": [{"role": "user", "content": "word " * 40000}]}
    with pytest.raises(BadRequest, match="prompt"):
        apply_token_cap(agent(), huge)
    free: dict = {"model": "auto", "messages": []}
    apply_token_cap(None, free)
    assert "max_tokens" not in free


async def test_registry_creates_finds_by_key_restores_and_deletes(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "q.db")
    await ledger.open()
    try:
        reg = AgentRegistry(ledger, FrozenClock())
        reg.load_config((IMPERIUM,))
        created, key = await reg.create(AgentSpec(name="scout", providers=["openai"]))
        assert key.startswith("qf-") and reg.by_key(key) is created
        assert reg.by_key(key + "x") is None
        with pytest.raises(BadRequest, match="configuration file"):
            await reg.create(AgentSpec(name="imperium"))
        again = AgentRegistry(ledger, FrozenClock())
        await again.restore()
        assert again.by_key(key) is not None and again.get("scout") is not None
        await again.delete("scout")
        third = AgentRegistry(ledger, FrozenClock())
        await third.restore()
        assert third.get("scout") is None
    finally:
        await ledger.close()
