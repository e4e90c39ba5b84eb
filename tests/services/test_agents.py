"""Agents: limits from the spec, provider order with the switch threshold, token cap, registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from quotaflow.config.schema import AgentSpec
from quotaflow.errors import BadRequest, Conflict
from quotaflow.services.agents import (
    Agent,
    AgentRegistry,
    agent_limits,
    apply_token_cap,
    hash_key,
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


BOT1 = AgentSpec.model_validate({
    "name": "bot1", "budgets": [{"metric": "tokens", "window": "day", "amount": 300}],
    "max_tokens_per_request": 50,
})  # fmt: skip


async def test_creating_a_taken_name_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "q.db")
    await ledger.open()
    try:
        reg = AgentRegistry(ledger, FrozenClock())
        reg.load_config((IMPERIUM,))
        first, key = await reg.create(BOT1)
        with pytest.raises(Conflict, match="exists already") as refused:
            await reg.create(AgentSpec(name="bot1"))
        assert refused.value.status == 409 and refused.value.code == "agent_exists"
        assert "DELETE /api/agents/bot1" in refused.value.message
        with pytest.raises(Conflict, match="configuration file") as configured:
            await reg.create(AgentSpec(name="imperium"))
        assert configured.value.code == "configured_agent"
        assert reg.get("bot1") is first and reg.by_key(key) is first
        assert first.spec.max_tokens_per_request == 50 and len(first.limits) == 1
        restored = AgentRegistry(ledger, FrozenClock())
        await restored.restore()
        got = restored.get("bot1")
        assert got is not None and got.spec == first.spec and restored.by_key(key) is not None
        await reg.delete("bot1")
        again, new_key = await reg.create(AgentSpec(name="bot1"))
        assert reg.by_key(new_key) is again and reg.by_key(key) is None
    finally:
        await ledger.close()


async def test_concurrent_creates_of_one_name_have_one_winner(tmp_path: Path) -> None:
    """In one process, and across two registries sharing a store (replicas) that have not
    yet synced each other's agents."""
    ledger = SqliteLedger(tmp_path / "q.db")
    await ledger.open()
    try:
        here, there = AgentRegistry(ledger, FrozenClock()), AgentRegistry(ledger, FrozenClock())
        specs = [BOT1.model_copy(update={"max_tokens_per_request": 10 + i}) for i in range(6)]
        regs = [here, there] * 3
        results = await asyncio.gather(
            *(r.create(s) for r, s in zip(regs, specs, strict=True)), return_exceptions=True
        )
        won = [r for r in results if isinstance(r, tuple)]
        assert len(won) == 1, results
        assert all(isinstance(r, Conflict) for r in results if not isinstance(r, tuple))
        agent, key = won[0]
        (stored,) = await ledger.stored_agents()
        assert stored[1] == hash_key(key)
        assert AgentSpec.model_validate_json(stored[2]) == agent.spec
        loser = there if here.get("bot1") is agent else here
        assert loser.get("bot1") is None  # refused there: nothing put in its registry
        await loser.restore()
        synced = loser.get("bot1")
        assert synced is not None and synced.spec == agent.spec and loser.by_key(key) is not None
    finally:
        await ledger.close()
