"""The picker's refusal: when every key is out of headroom, the 429's Retry-After and its
message give the earliest time a request of this caller could actually be served.

For each key that is the later of when the key frees and when every limit the request does
not fit frees (an agent's budget binds on every key); the earliest over the keys. The fake
provider stands in for the provider; the gateway's clock is a :class:`FrozenClock`."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from quotaflow.engine.limits import Limit
from quotaflow.engine.windows import next_reset, parse_window
from quotaflow.errors import QuotaExhausted, QuotaflowError
from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider
from quotaflow.gateway import CallContext, Gateway
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock, config

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
HALF_PAST_TEN = 1_767_225_600.0 + 10.5 * 3600  # 2026-01-01T10:30:00Z
MIDNIGHT = 1_767_225_600.0 + 86_400  # when a day window (UTC) frees
SECRETS = {"alpha": "sk-alpha-000000", "bravo": "sk-bravo-000000", "charlie": "sk-charlie-0000"}


def _config(base_url: str, alpha_limits: list[dict[str, Any]]) -> Any:
    keys = [
        {"id": "alpha", "secret": SECRETS["alpha"], "priority": 0, "limits": alpha_limits},
        {"id": "bravo", "secret": SECRETS["bravo"], "priority": 1, "limits": []},
        {"id": "charlie", "secret": SECRETS["charlie"], "priority": 2, "limits": []},
    ]
    return config({
        "settings": {"strategy": "priority", "preferred_providers": [], "max_wait_s": 0},
        "providers": [{"name": "p", "protocol": "openai", "base_url": base_url, "models": ["m"],
                       "keys": keys}],
    })  # fmt: skip


@asynccontextmanager
async def served(
    tmp_path: Path, fake_cfg: FakeProviderConfig, alpha_limits: list[Any], clock: FrozenClock
) -> AsyncIterator[Gateway]:
    """A gateway in front of the fake provider (keys alpha, bravo, charlie, in that order)."""
    async with running_fake_provider(fake_cfg) as fake:
        cfg = _config(fake.base_url, alpha_limits)
        gw = Gateway(cfg, ledger=SqliteLedger(tmp_path / "q.db"), clock=clock)
        await gw.start()
        try:
            yield gw
        finally:
            await gw.close()


def _fake(*out: str) -> FakeProviderConfig:
    """The keys named in ``out`` have no quota left at the provider: a first use cools
    them for an hour."""
    return FakeProviderConfig(
        keys={
            secret: KeyState(quota_tokens=1, used_tokens=1) if name in out else KeyState()
            for name, secret in SECRETS.items()
        }
    )


async def _until_refused(gw: Gateway, ctx: CallContext, stream: bool) -> QuotaExhausted:
    body = {**BODY, "max_tokens": 20, "stream": stream}
    for _ in range(100):
        try:
            if stream:
                s = await gw.open_stream(body, ctx)

                async def drop(_: bytes) -> None:
                    return None

                await s.pump(drop)
            else:
                await gw.chat(body, ctx)
        except QuotaExhausted as exc:
            return exc
    raise AssertionError("the agent's budget was never used up")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_spent_agent_budget_is_retried_after_it_frees_not_after_a_key_does(
    tmp_path: Path, stream: bool
) -> None:
    """alpha full for the hour, bravo cooled for an hour by the provider, charlie open: the
    agent's day budget binds on all three, so the answer is midnight, not in an hour."""
    budget = Limit.make("agent:bot1", "tokens", parse_window("day"), 300)
    ctx = CallContext(agent="bot1", limits=(budget,))
    alpha_hour = [{"metric": "requests", "window": "hour", "amount": 1}]
    clock = FrozenClock(HALF_PAST_TEN)
    async with served(tmp_path, _fake("bravo"), alpha_hour, clock) as gw:
        err = await _until_refused(gw, ctx, stream)
        assert gw.health["bravo"].depleted_until == HALF_PAST_TEN + 3600
    assert err.headers["retry-after"] == str(math.ceil(MIDNIGHT - clock.now()))
    rejected = {r["key"]: r for r in err.details["rejected"]}
    assert set(rejected) == {"alpha", "bravo", "charlie"}
    assert all(r["available_at"] == MIDNIGHT for r in rejected.values())
    assert all(r["waits_for"] == budget.id for r in rejected.values())
    assert err.details["first_frees_at"] == MIDNIGHT
    assert "The first frees in 13h 30m, when agent bot1's budget" in err.message
    assert budget.id in err.details["full_limits"]


async def test_when_only_the_agent_budget_blocks_the_error_says_so(tmp_path: Path) -> None:
    budget = Limit.make("agent:bot1", "tokens", parse_window("day"), 300)
    ctx = CallContext(agent="bot1", limits=(budget,))
    clock = FrozenClock(HALF_PAST_TEN)
    async with served(tmp_path, FakeProviderConfig(), [], clock) as gw:
        err = await _until_refused(gw, ctx, stream=False)
    assert err.message.startswith(f"This agent's budget is used up (full limits: {budget.id}).")
    assert "(it applies to every key)" in err.message
    assert err.headers["retry-after"] == str(math.ceil(MIDNIGHT - clock.now()))


async def test_a_key_that_frees_first_for_this_agent_sets_the_retry_after(
    tmp_path: Path,
) -> None:
    """With the agent's budget open, the earliest key to free is the answer: alpha's hour
    (11:00) before the cool-downs of bravo and charlie, both out at the provider (11:30)."""
    clock = FrozenClock(HALF_PAST_TEN)
    alpha_hour = [{"metric": "requests", "window": "hour", "amount": 1}]
    async with served(tmp_path, _fake("bravo", "charlie"), alpha_hour, clock) as gw:
        await gw.chat({**BODY, "max_tokens": 20})  # alpha's request of the hour
        with pytest.raises(QuotaflowError) as first:
            await gw.chat({**BODY, "max_tokens": 20})  # bravo, charlie: out at the provider
        assert first.value.status == 429
        with pytest.raises(QuotaExhausted) as err:
            await gw.chat({**BODY, "max_tokens": 20})
    eleven = next_reset(HALF_PAST_TEN, parse_window("hour"), ZoneInfo("UTC"))
    assert eleven == HALF_PAST_TEN + 1800
    assert err.value.details["first_frees_at"] == eleven
    assert err.value.headers["retry-after"] == "1800"
    assert "The first frees in 30m." in err.value.message
