"""One suite, every CounterStore: the embedded memory counters and the shared Redis ones.

Redis runs against the machine's server (127.0.0.1:6379) under a key prefix of its own; it
is skipped when Redis is unreachable (and fails on CI, see tests/scale/services.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import pytest

from quotaflow.engine.limits import Limit
from quotaflow.engine.reservation import Claim
from quotaflow.storage.base import CounterStore
from quotaflow.storage.counters.memory import MemoryCounterStore
from quotaflow.testing import FrozenClock, limit
from quotaflow.types import Measure
from tests.scale.services import drop_prefix, require_redis, unique_prefix

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
MIDNIGHT = 1_773_532_800.0  # 2026-03-15T00:00:00Z
T0 = MIDNIGHT + 12 * 3600

KEY_TOKENS = limit("key:a", "tokens", "day", 1_000)
KEY_REQUESTS = limit("key:a", "requests", "minute", 3)
AGENT_COST = limit("agent:bob", "cost", "month", 1.0)
ROLLING = limit("key:a", "tokens", "rolling 60s", 100)
ONCE = limit("key:a", "tokens", "once", 1_000)


class Backends:
    """Makes stores of one backend; several stores of the redis backend share counters."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = unique_prefix()
        self.stores: list[CounterStore] = []
        self.url = require_redis() if kind == "redis" else ""

    async def make(self, tz: ZoneInfo = UTC, hold_ttl_s: float = 300.0) -> CounterStore:
        if self.kind == "memory":
            return MemoryCounterStore(tz)
        from quotaflow.storage.counters.rebuild import LedgerSource
        from quotaflow.storage.counters.redis import RedisCounterStore

        store = RedisCounterStore(
            self.url, tz, prefix=self.prefix, hold_ttl_s=hold_ttl_s, clock=FrozenClock(T0)
        )
        await store.attach(LedgerSource(None, list))  # an empty ledger: loaded, nothing used
        self.stores.append(store)
        return store

    async def close(self) -> None:
        for s in self.stores:
            await s.close()  # type: ignore[attr-defined]
        if self.kind == "redis":
            await drop_prefix(self.url, self.prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.scale)])
async def backends(request: pytest.FixtureRequest) -> AsyncIterator[Backends]:
    b = Backends(request.param)
    yield b
    await b.close()


@pytest.fixture
async def store(backends: Backends) -> CounterStore:
    return await backends.make()


async def used(store: CounterStore, lim: Limit, now: float) -> tuple[float, float]:
    u = (await store.snapshot([lim], now))[lim.id]
    return u.used, u.reserved


async def test_reserve_books_every_claim_and_settle_commits_actuals(store) -> None:
    out = await store.reserve(
        [Claim(KEY_TOKENS, 600), Claim(KEY_REQUESTS, 1), Claim(AGENT_COST, 0.3)], T0
    )
    assert out.ok and out.reservation_id is not None
    snap = await store.snapshot([KEY_TOKENS, KEY_REQUESTS, AGENT_COST], T0)
    assert [(snap[x.id].used, snap[x.id].reserved) for x in (KEY_TOKENS, KEY_REQUESTS)] == [
        (0, 600),
        (0, 1),
    ]
    assert snap[AGENT_COST.id].reserved == pytest.approx(0.3)
    await store.settle(out.reservation_id, Measure(tokens=250, requests=1, cost=0.1), T0 + 2)
    snap = await store.snapshot([KEY_TOKENS, KEY_REQUESTS, AGENT_COST], T0 + 2)
    assert (snap[KEY_TOKENS.id].used, snap[KEY_TOKENS.id].reserved) == (250, 0)
    assert snap[KEY_REQUESTS.id].used == 1
    assert snap[AGENT_COST.id].used == pytest.approx(0.1)
    assert snap[AGENT_COST.id].reserved == pytest.approx(0)
    assert snap[KEY_TOKENS.id].resets_at == MIDNIGHT + 86400


async def test_a_refused_reservation_books_nothing_and_names_the_full_limit(store) -> None:
    assert (await store.reserve([Claim(KEY_TOKENS, 100), Claim(AGENT_COST, 0.9)], T0)).ok
    refused = await store.reserve([Claim(KEY_TOKENS, 100), Claim(AGENT_COST, 0.2)], T0)
    assert not refused.ok and refused.reservation_id is None
    assert refused.shortfall is not None
    assert refused.shortfall.limit == AGENT_COST
    assert refused.shortfall.taken == pytest.approx(0.9)
    assert refused.shortfall.needed == pytest.approx(0.2)
    assert await used(store, KEY_TOKENS, T0) == (0, 100)


async def test_release_charges_nothing_and_a_second_close_is_harmless(store) -> None:
    out = await store.reserve([Claim(KEY_TOKENS, 1_000)], T0)
    assert out.reservation_id is not None
    assert not (await store.reserve([Claim(KEY_TOKENS, 1)], T0)).ok
    await store.release(out.reservation_id)
    assert await used(store, KEY_TOKENS, T0) == (0, 0)
    again = await store.reserve([Claim(KEY_TOKENS, 1_000)], T0)
    assert again.ok
    await store.release(out.reservation_id)
    await store.settle(out.reservation_id, Measure(tokens=5), T0)
    assert await used(store, KEY_TOKENS, T0) == (0, 1_000)


async def test_reservation_made_before_midnight_settles_into_the_old_day(store) -> None:
    out = await store.reserve([Claim(KEY_TOKENS, 800)], MIDNIGHT - 10)
    assert out.reservation_id is not None
    assert await used(store, KEY_TOKENS, MIDNIGHT + 10) == (0, 0)
    new = await store.reserve([Claim(KEY_TOKENS, 1_000)], MIDNIGHT + 10)
    assert new.reservation_id is not None
    await store.settle(out.reservation_id, Measure(tokens=700), MIDNIGHT + 10)
    assert await used(store, KEY_TOKENS, MIDNIGHT + 10) == (0, 1_000)
    await store.settle(new.reservation_id, Measure(tokens=900), MIDNIGHT + 10)
    assert await used(store, KEY_TOKENS, MIDNIGHT + 10) == (900, 0)


async def test_day_window_resets_at_local_midnight_of_the_zone(backends) -> None:
    store = await backends.make(NEW_YORK)
    before = MIDNIGHT + 4 * 3600 - 1  # 23:59:59 EDT on the 14th
    await store.charge([KEY_TOKENS], Measure(tokens=900), before, before)
    snap = await store.snapshot([KEY_TOKENS], before)
    assert (snap[KEY_TOKENS.id].used, snap[KEY_TOKENS.id].resets_at) == (900, before + 1)
    assert await used(store, KEY_TOKENS, MIDNIGHT + 1) == (900, 0)
    assert await used(store, KEY_TOKENS, before + 1) == (0, 0)


async def test_rolling_window_events_expire_exactly_after_n_seconds(store) -> None:
    await store.charge([ROLLING], Measure(tokens=40), T0, T0)
    await store.charge([ROLLING], Measure(tokens=30), T0 + 10, T0 + 10)
    u = (await store.snapshot([ROLLING], T0 + 10))[ROLLING.id]
    assert (u.used, u.resets_at, u.frees_at) == (70, None, T0 + 60)
    assert not (await store.reserve([Claim(ROLLING, 31)], T0 + 59.999)).ok
    assert await used(store, ROLLING, T0 + 60) == (30, 0)
    assert (await store.snapshot([ROLLING], T0 + 60))[ROLLING.id].frees_at == T0 + 70
    assert (await store.reserve([Claim(ROLLING, 70)], T0 + 60)).ok
    assert await used(store, ROLLING, T0 + 70) == (0, 70)


async def test_rolling_reservation_settles_as_an_event_at_its_start(store) -> None:
    rolling = limit("key:a", "requests", "rolling 60s", 2)
    out = await store.reserve([Claim(rolling, 1)], T0)
    assert out.reservation_id is not None
    await store.settle(out.reservation_id, Measure(requests=1), T0 + 5)
    assert await used(store, rolling, T0 + 59) == (1, 0)
    assert await used(store, rolling, T0 + 60) == (0, 0)


async def test_a_reservation_with_a_ttl_expires_and_cannot_be_settled(store) -> None:
    stale = await store.reserve([Claim(KEY_TOKENS, 900)], T0, ttl_s=30)
    assert stale.reservation_id is not None
    assert not (await store.reserve([Claim(KEY_TOKENS, 200)], T0 + 29.9)).ok
    assert (await store.reserve([Claim(KEY_TOKENS, 200)], T0 + 30)).ok
    await store.settle(stale.reservation_id, Measure(tokens=900), T0 + 31)
    assert await used(store, KEY_TOKENS, T0 + 31) == (0, 200)


async def test_reset_forgets_committed_use_but_keeps_reservations(store) -> None:
    await store.charge([KEY_TOKENS, ROLLING], Measure(tokens=80), T0, T0)
    held = await store.reserve([Claim(KEY_TOKENS, 100)], T0)
    await store.reset([KEY_TOKENS, ROLLING], T0)
    assert await used(store, KEY_TOKENS, T0) == (0, 100)
    assert await used(store, ROLLING, T0) == (0, 0)
    assert (await store.snapshot([ROLLING], T0))[ROLLING.id].frees_at is None
    assert held.reservation_id is not None
    await store.settle(held.reservation_id, Measure(tokens=60), T0)
    assert await used(store, KEY_TOKENS, T0) == (60, 0)


async def test_charge_books_only_into_the_window_it_happened_in(store) -> None:
    now = MIDNIGHT + 3600
    await store.charge([KEY_TOKENS, ONCE], Measure(tokens=10), now - 60, now)
    await store.charge([KEY_TOKENS, ONCE], Measure(tokens=20), MIDNIGHT - 60, now)
    assert await used(store, KEY_TOKENS, now) == (10, 0)
    assert await used(store, ONCE, now) == (30, 0)
    await store.charge([ROLLING], Measure(tokens=5), now - 61, now)
    await store.charge([ROLLING], Measure(tokens=7), now - 59, now)
    assert await used(store, ROLLING, now) == (7, 0)


async def test_once_window_never_resets(store) -> None:
    out = await store.reserve([Claim(ONCE, 60)], T0)
    assert out.reservation_id is not None
    await store.settle(out.reservation_id, Measure(tokens=60), T0 + 400 * 86400)
    u = (await store.snapshot([ONCE], T0 + 800 * 86400))[ONCE.id]
    assert (u.used, u.resets_at) == (60, None)


async def test_a_changed_amount_keeps_the_usage_of_the_window(store) -> None:
    await store.charge([KEY_TOKENS], Measure(tokens=700), T0, T0)
    held = await store.reserve([Claim(KEY_TOKENS, 200)], T0)
    lowered = limit("key:a", "tokens", "day", 800)
    u = (await store.snapshot([lowered], T0))[lowered.id]
    assert (u.used, u.reserved, u.limit.amount) == (700, 200, 800)
    assert not (await store.reserve([Claim(lowered, 1)], T0)).ok
    assert held.reservation_id is not None
    await store.settle(held.reservation_id, Measure(tokens=100), T0)
    assert await used(store, lowered, T0) == (800, 0)


@pytest.mark.parametrize("replicas", [1, 3])
async def test_300_concurrent_requests_never_overshoot(backends, replicas) -> None:
    """Many requests over a key, an agent budget and a request cap, from one or (Redis only)
    several stores sharing the counters: committed use never passes a limit, and every
    settled token is counted exactly once."""
    if backends.kind == "memory" and replicas > 1:
        pytest.skip("memory counters belong to one process")
    stores = [await backends.make() for _ in range(replicas)]
    rng = random.Random(8)
    key = limit("key:shared", "tokens", "day", 40_000)
    agent = limit("agent:bob", "tokens", "month", 30_000)
    cap = limit("agent:bob", "requests", "day", 120)
    limits = [key, agent, cap]
    settled = {"tokens": 0.0, "requests": 0}
    refused = 0

    async def request(i: int) -> None:
        nonlocal refused
        store = stores[i % replicas]
        need = float(rng.randint(100, 700))
        claims = [Claim(key, need), Claim(agent, need), Claim(cap, 1)]
        out = await store.reserve(claims, T0)
        if not out.ok:
            refused += 1
            return
        assert out.reservation_id is not None
        await asyncio.sleep(rng.random() * 0.005)
        if rng.random() < 0.1:
            await store.release(out.reservation_id)
            return
        actual = float(rng.randint(50, int(need)))
        await store.settle(out.reservation_id, Measure(tokens=actual, requests=1), T0)
        settled["tokens"] += actual
        settled["requests"] += 1
        snap = await store.snapshot(limits, T0)
        for lim in limits:
            assert snap[lim.id].used + snap[lim.id].reserved <= lim.amount + 1e-6

    await asyncio.gather(*(request(i) for i in range(300)))
    snap = await stores[0].snapshot(limits, T0)
    assert snap[key.id].used == pytest.approx(settled["tokens"])
    assert snap[agent.id].used == pytest.approx(settled["tokens"])
    assert snap[cap.id].used == settled["requests"]
    assert all(snap[lim.id].reserved == pytest.approx(0) for lim in limits)
    assert refused > 0 and settled["requests"] > 30


# -- Redis only: what a shared store adds ---------------------------------------------------


@pytest.mark.scale
async def test_a_dead_replicas_hold_is_charged_at_its_worst_case_then_corrected() -> None:
    """A hold made without a ttl (a proxied request) outlives nothing: when its replica dies,
    the hold is charged at its worst case after ``hold_ttl_s`` (as the ledger charges the
    crashed row); if the request settles after all, the truth replaces the worst case."""
    b = Backends("redis")
    try:
        store = await b.make(hold_ttl_s=10)
        out = await store.reserve([Claim(KEY_TOKENS, 600), Claim(ROLLING, 50)], T0)
        assert out.reservation_id is not None
        assert await used(store, KEY_TOKENS, T0 + 9) == (0, 600)
        assert await used(store, KEY_TOKENS, T0 + 10) == (600, 0)
        assert await used(store, ROLLING, T0 + 10) == (50, 0)
        await store.settle(out.reservation_id, Measure(tokens=120), T0 + 11)
        assert await used(store, KEY_TOKENS, T0 + 11) == (120, 0)
        u = (await store.snapshot([ROLLING], T0 + 11))[ROLLING.id]
        assert (u.used, u.reserved, u.frees_at) == (120, 0, T0 + 60)
    finally:
        await b.close()


@pytest.mark.scale
async def test_lost_counters_fail_closed_until_reloaded() -> None:
    from quotaflow.errors import Unavailable

    b = Backends("redis")
    try:
        store = await b.make()
        await store.charge([KEY_TOKENS], Measure(tokens=10), T0, T0)
        import redis.asyncio as aioredis

        r = aioredis.from_url(b.url)
        await r.delete(f"{b.prefix}epoch")  # what a restart without persistence looks like
        await r.aclose()
        with pytest.raises(Unavailable) as err:
            await store.reserve([Claim(KEY_TOKENS, 1)], T0)
        assert err.value.status == 503
        with pytest.raises(Unavailable):
            await store.snapshot([KEY_TOKENS], T0)
    finally:
        await b.close()
