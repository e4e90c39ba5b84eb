"""The wait for headroom: ``max_wait_s`` bounds the whole wait of a request, however many
times it looks again, and a request whose client went away goes no further.

The fake provider stands in for the provider; the gateway's clock is a
:class:`FrozenClock` that moves only when the gateway sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from quotaflow.errors import ClientGone, QuotaExhausted
from quotaflow.fake_provider import FakeProviderConfig, running_fake_provider
from quotaflow.gateway import CallContext, Gateway
from quotaflow.gateway.streaming import ActiveStream
from quotaflow.storage.base import LedgerQuery
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock, config

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 60,
}
# A request reserves 68 tokens (8 of prompt, 60 of answer, never clamped below 60): one at a
# time fits, and once it is answered (24 tokens used) the next one fits again.
ONE_AT_A_TIME = [{"metric": "tokens", "window": "day", "amount": 100}]


def _config(base_url: str, **settings: Any) -> Any:
    keys = [{"id": "k0", "secret": "sk-wait-0000000", "limits": ONE_AT_A_TIME}]
    return config({
        "settings": {"strategy": "priority", "preferred_providers": [],
                     "min_completion_tokens": 60, **settings},
        "providers": [{"name": "p", "protocol": "openai", "base_url": base_url, "models": ["m"],
                       "keys": keys}],
    })  # fmt: skip


@asynccontextmanager
async def gateway(
    tmp_path: Path,
    clock: FrozenClock,
    slept: list[float],
    after_sleep: Callable[[], Awaitable[None]] | None = None,
    **settings: Any,
) -> AsyncIterator[Gateway]:
    """A gateway in front of the fake provider whose sleeps move ``clock`` (and are kept);
    ``after_sleep`` runs after each."""

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        if after_sleep is not None:
            await after_sleep()

    async with running_fake_provider(FakeProviderConfig()) as fake:
        cfg = _config(fake.base_url, **settings)
        gw = Gateway(cfg, ledger=SqliteLedger(tmp_path / "q.db"), clock=clock, sleep=sleep)
        await gw.start()
        try:
            yield gw
        finally:
            await gw.close()


async def _request(gw: Gateway, stream: bool, ctx: CallContext | None = None) -> Any:
    if stream:
        return await gw.open_stream({**BODY, "stream": True}, ctx)
    return await gw.chat(BODY, ctx)


async def _hold(gw: Gateway) -> ActiveStream:
    """A stream left open: the key is full while it is, and frees 'soon' as far as the
    gateway can tell (a request in flight settles below its worst case)."""
    return await gw.open_stream({**BODY, "stream": True})


async def _reserved(gw: Gateway) -> float:
    limits = gw.all_limits()
    usages = await gw.counters.snapshot(limits, gw.clock.now())
    return sum(u.reserved for u in usages.values())


@pytest.mark.parametrize("stream", [False, True])
async def test_max_wait_bounds_the_whole_wait_not_each_look(tmp_path: Path, stream: bool) -> None:
    """A key held by a request in flight frees 'soon' again and again; the waiting request
    still gets its 429 once ``max_wait_s`` has passed in all, long before its deadline."""
    clock, slept = FrozenClock(), []
    async with gateway(tmp_path, clock, slept, max_wait_s=2, request_timeout_s=30) as gw:
        held = await _hold(gw)
        try:
            with pytest.raises(QuotaExhausted) as err:
                await _request(gw, stream)
        finally:
            await held.abandon()
    assert len(slept) > 1  # it did look again while it waited
    assert sum(slept) <= 2.0 + 0.1  # max_wait_s in all (and one look's sleep at most beyond)
    assert err.value.status == 429
    assert "retry-after" in err.value.headers


async def test_a_key_that_frees_within_what_is_left_of_the_wait_is_waited_for(
    tmp_path: Path,
) -> None:
    """The bound is on the whole wait: headroom freeing within it is still waited for."""
    clock, slept = FrozenClock(), []
    held: list[ActiveStream] = []

    async def end_the_held_stream_after_a_second() -> None:
        if sum(slept) >= 1.0 and held:
            await held.pop().abandon()

    async with gateway(
        tmp_path, clock, slept, end_the_held_stream_after_a_second, max_wait_s=2
    ) as gw:
        held.append(await _hold(gw))
        outcome = await gw.chat(BODY)
    assert not held
    assert outcome.key.id == "k0"
    assert 1.0 <= sum(slept) <= 2.0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_gone_while_waiting_is_not_sent_upstream_nor_charged(
    tmp_path: Path, stream: bool
) -> None:
    clock, slept = FrozenClock(), []
    connected = [True]

    def gone_after_a_second_of_waiting() -> bool:
        if sum(slept) >= 1.0:
            connected[0] = False
        return connected[0]

    ctx = CallContext(agent="bot", connected=gone_after_a_second_of_waiting)
    async with gateway(tmp_path, clock, slept, max_wait_s=30, request_timeout_s=60) as gw:
        held = await _hold(gw)
        try:
            with pytest.raises(ClientGone) as err:
                await _request(gw, stream, ctx)
        finally:
            await held.abandon()
        assert await _reserved(gw) == 0
        rows = await gw.ledger.query(LedgerQuery(limit=50, newest_first=False))
        summary = gw.session_summary()
    assert 1.0 <= sum(slept) < 2.0  # it stopped waiting once the client was gone
    assert err.value.status == 499
    assert [r.agent for r in rows] == ["default"]  # the held stream's: nothing of bot's
    assert summary["requests"] == 1  # the held stream only: bot's is no failure of the gateway


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_gone_before_the_call_frees_its_reservation(
    tmp_path: Path, stream: bool
) -> None:
    """Headroom at once, but the client is gone: nothing goes upstream, nothing is held."""
    clock, slept = FrozenClock(), []
    ctx = CallContext(agent="bot", connected=lambda: False)
    async with gateway(tmp_path, clock, slept, max_wait_s=0) as gw:
        with pytest.raises(ClientGone):
            await _request(gw, stream, ctx)
        assert await _reserved(gw) == 0
        assert await gw.ledger.query(LedgerQuery(limit=50)) == []
        answered = await gw.chat(BODY)  # its reservation was freed: the next one fits
    assert answered.key.id == "k0"
    assert slept == []
