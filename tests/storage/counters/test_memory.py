"""The embedded counters: all-or-nothing reservations, windows, TTLs, and 200 concurrent requests."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from quotaflow.engine.limits import Limit
from quotaflow.engine.reservation import Claim
from quotaflow.storage.counters.memory import MemoryCounterStore
from quotaflow.testing import FrozenClock, limit
from quotaflow.types import Measure

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
MIDNIGHT = 1_773_532_800.0  # 2026-03-15T00:00:00Z

KEY_TOKENS = limit("key:a", "tokens", "day", 1_000)
KEY_REQUESTS = limit("key:a", "requests", "minute", 3)
AGENT_COST = limit("agent:bob", "cost", "month", 1.0)


@pytest.fixture
def store() -> MemoryCounterStore:
    return MemoryCounterStore(UTC)


def used(store: MemoryCounterStore, lim: Limit, now: float) -> tuple[float, float]:
    u = store.snapshot_now([lim], now)[lim.id]
    return u.used, u.reserved


async def test_reserve_books_every_claim_and_settle_commits_actuals(store, clock) -> None:
    now = clock.now()
    out = await store.reserve(
        [Claim(KEY_TOKENS, 600), Claim(KEY_REQUESTS, 1), Claim(AGENT_COST, 0.3)], now
    )
    assert out.ok
    snap = await store.snapshot([KEY_TOKENS, KEY_REQUESTS, AGENT_COST], now)
    assert [
        (snap[x.id].used, snap[x.id].reserved) for x in (KEY_TOKENS, KEY_REQUESTS, AGENT_COST)
    ] == [
        (0, 600),
        (0, 1),
        (0, 0.3),
    ]
    assert out.reservation_id is not None
    await store.settle(out.reservation_id, Measure(tokens=250, requests=1, cost=0.1), now + 2)
    snap = await store.snapshot([KEY_TOKENS, KEY_REQUESTS, AGENT_COST], now + 2)
    assert snap[KEY_TOKENS.id].used == 250
    assert snap[KEY_TOKENS.id].reserved == 0
    assert snap[KEY_REQUESTS.id].used == 1
    assert snap[AGENT_COST.id].used == pytest.approx(0.1)
    assert store.reservation_count() == 0


async def test_a_refused_reservation_books_nothing_on_any_limit(store, clock) -> None:
    now = clock.now()
    first = await store.reserve([Claim(KEY_TOKENS, 100), Claim(AGENT_COST, 0.9)], now)
    assert first.ok
    # Tokens fit, cost does not: nothing of it may stay booked.
    refused = await store.reserve([Claim(KEY_TOKENS, 100), Claim(AGENT_COST, 0.2)], now)
    assert not refused.ok
    assert refused.shortfall is not None
    assert refused.shortfall.limit == AGENT_COST
    assert refused.shortfall.taken == pytest.approx(0.9)
    assert used(store, KEY_TOKENS, now) == (0, 100)
    assert used(store, AGENT_COST, now)[0] == 0
    assert used(store, AGENT_COST, now)[1] == pytest.approx(0.9)
    assert store.reservation_count() == 1


async def test_release_returns_the_reservation_and_charges_nothing(store, clock) -> None:
    now = clock.now()
    out = await store.reserve([Claim(KEY_TOKENS, 1_000)], now)
    assert out.reservation_id is not None
    assert not (await store.reserve([Claim(KEY_TOKENS, 1)], now)).ok
    await store.release(out.reservation_id)
    assert used(store, KEY_TOKENS, now) == (0, 0)
    assert (await store.reserve([Claim(KEY_TOKENS, 1_000)], now)).ok
    # Releasing or settling twice is harmless.
    await store.release(out.reservation_id)
    assert not store.settle_now(out.reservation_id, Measure(tokens=5), now)
    assert used(store, KEY_TOKENS, now) == (0, 1_000)


async def test_reservation_made_before_midnight_settles_into_the_old_day(store) -> None:
    clock = FrozenClock(MIDNIGHT - 10)
    out = await store.reserve([Claim(KEY_TOKENS, 800)], clock.now())
    assert out.reservation_id is not None
    clock.advance(20)  # the new day has begun; its window is empty and has full room
    assert used(store, KEY_TOKENS, clock.now()) == (0, 0)
    new = await store.reserve([Claim(KEY_TOKENS, 1_000)], clock.now())
    assert new.ok and new.reservation_id is not None
    await store.settle(out.reservation_id, Measure(tokens=700), clock.now())
    # The old request belongs to yesterday: today's counters are untouched by it.
    assert used(store, KEY_TOKENS, clock.now()) == (0, 1_000)
    await store.settle(new.reservation_id, Measure(tokens=900), clock.now())
    assert used(store, KEY_TOKENS, clock.now()) == (900, 0)


async def test_day_window_resets_at_local_midnight_of_the_configured_zone() -> None:
    store = MemoryCounterStore(NEW_YORK)
    # 2026-03-15T03:59:59Z is 23:59:59 EDT on the 14th.
    before = MIDNIGHT + 4 * 3600 - 1
    store.charge_now([KEY_TOKENS], Measure(tokens=900), before, before)
    assert used(store, KEY_TOKENS, before) == (900, 0)
    assert store.snapshot_now([KEY_TOKENS], before)[KEY_TOKENS.id].resets_at == before + 1
    # Midnight UTC already passed, but New York's day has not: still 900.
    assert used(store, KEY_TOKENS, MIDNIGHT + 1) == (900, 0)
    assert used(store, KEY_TOKENS, before + 1) == (0, 0)


async def test_rolling_window_events_expire_exactly_after_n_seconds(store, clock) -> None:
    rolling = limit("key:a", "tokens", "rolling 60s", 100)
    t0 = clock.now()
    store.charge_now([rolling], Measure(tokens=40), t0, t0)
    store.charge_now([rolling], Measure(tokens=30), t0 + 10, t0 + 10)
    u = store.snapshot_now([rolling], t0 + 10)[rolling.id]
    assert (u.used, u.resets_at, u.frees_at) == (70, None, t0 + 60)
    assert not (await store.reserve([Claim(rolling, 31)], t0 + 59.999)).ok
    assert used(store, rolling, t0 + 59.999) == (70, 0)
    # At exactly t0 + 60 the first event is out of the window.
    assert used(store, rolling, t0 + 60) == (30, 0)
    assert store.snapshot_now([rolling], t0 + 60)[rolling.id].frees_at == t0 + 70
    assert (await store.reserve([Claim(rolling, 70)], t0 + 60)).ok
    assert used(store, rolling, t0 + 70) == (0, 70)


async def test_rolling_reservation_settles_as_an_event_at_its_start(store, clock) -> None:
    rolling = limit("key:a", "requests", "rolling 60s", 2)
    t0 = clock.now()
    out = store.reserve_now([Claim(rolling, 1)], t0)
    assert out.reservation_id is not None
    assert store.settle_now(out.reservation_id, Measure(requests=1), t0 + 5)
    assert used(store, rolling, t0 + 59) == (1, 0)
    assert used(store, rolling, t0 + 60) == (0, 0)


async def test_expired_reservation_frees_its_room_and_cannot_be_settled(store, clock) -> None:
    t0 = clock.now()
    stale = store.reserve_now([Claim(KEY_TOKENS, 900)], t0, ttl_s=30)
    assert stale.reservation_id is not None
    assert not store.reserve_now([Claim(KEY_TOKENS, 200)], t0 + 29.9).ok
    fresh = store.reserve_now([Claim(KEY_TOKENS, 200)], t0 + 30)
    assert fresh.ok
    assert store.reservation_count() == 1
    assert not store.settle_now(stale.reservation_id, Measure(tokens=900), t0 + 31)
    assert used(store, KEY_TOKENS, t0 + 31) == (0, 200)


async def test_reservation_without_ttl_never_expires(store, clock) -> None:
    t0 = clock.now()
    store.reserve_now([Claim(KEY_TOKENS, 900)], t0, ttl_s=5)
    keep = store.reserve_now([Claim(KEY_TOKENS, 50)], t0)
    assert used(store, KEY_TOKENS, t0 + 10) == (0, 50)
    assert keep.reservation_id is not None
    assert store.settle_now(keep.reservation_id, Measure(tokens=10), t0 + 10)


async def test_reset_forgets_committed_use_but_keeps_reservations(store, clock) -> None:
    now = clock.now()
    rolling = limit("key:a", "tokens", "rolling 60s", 100)
    store.charge_now([KEY_TOKENS, rolling], Measure(tokens=80), now, now)
    held = store.reserve_now([Claim(KEY_TOKENS, 100)], now)
    await store.reset([KEY_TOKENS, rolling], now)
    assert used(store, KEY_TOKENS, now) == (0, 100)
    assert used(store, rolling, now) == (0, 0)
    assert store.snapshot_now([rolling], now)[rolling.id].frees_at is None
    assert held.reservation_id is not None
    assert store.settle_now(held.reservation_id, Measure(tokens=60), now)
    assert used(store, KEY_TOKENS, now) == (60, 0)


async def test_charge_books_only_into_the_window_it_happened_in(store, clock) -> None:
    now = MIDNIGHT + 3600
    once = limit("key:a", "tokens", "once", 1_000)
    await store.charge([KEY_TOKENS, once], Measure(tokens=10), now - 60, now)
    await store.charge([KEY_TOKENS, once], Measure(tokens=20), MIDNIGHT - 60, now)  # yesterday
    assert used(store, KEY_TOKENS, now) == (10, 0)
    assert used(store, once, now) == (30, 0)
    rolling = limit("key:a", "tokens", "rolling 60s", 100)
    await store.charge([rolling], Measure(tokens=5), now - 61, now)  # already out of the window
    await store.charge([rolling], Measure(tokens=7), now - 59, now)
    assert used(store, rolling, now) == (7, 0)


async def test_once_window_never_resets(store, clock) -> None:
    once = limit("key:a", "tokens", "once", 100)
    t0 = clock.now()
    out = store.reserve_now([Claim(once, 60)], t0)
    assert out.reservation_id is not None
    store.settle_now(out.reservation_id, Measure(tokens=60), t0 + 400 * 86400)
    u = store.snapshot_now([once], t0 + 800 * 86400)[once.id]
    assert (u.used, u.resets_at) == (60, None)


async def test_a_changed_amount_keeps_the_usage_of_the_window(store, clock) -> None:
    """Editing a limit's amount (same id) must not wipe what was already used."""
    now = clock.now()
    store.charge_now([KEY_TOKENS], Measure(tokens=700), now, now)
    held = store.reserve_now([Claim(KEY_TOKENS, 200)], now)
    lowered = limit("key:a", "tokens", "day", 800)
    u = store.snapshot_now([lowered], now)[lowered.id]
    assert (u.used, u.reserved, u.limit.amount) == (700, 200, 800)
    assert not store.reserve_now([Claim(lowered, 1)], now).ok
    assert held.reservation_id is not None
    assert store.settle_now(held.reservation_id, Measure(tokens=100), now)
    assert used(store, lowered, now) == (800, 0)


# -- 200 concurrent requests ----------------------------------------------------------------------


@dataclass
class Shadow:
    """An independent model of the limits' state, updated in the same step as the store."""

    used: dict[str, float]
    reserved: dict[str, float]

    def fits(self, claims: list[Claim]) -> bool:
        return all(
            self.used[c.limit.id] + self.reserved[c.limit.id] + c.amount <= c.limit.amount + 1e-9
            for c in claims
        )


async def test_200_concurrent_requests_never_overshoot_and_never_refuse_with_room() -> None:
    clock = FrozenClock(MIDNIGHT + 3600)
    store = MemoryCounterStore(UTC)
    rng = random.Random(20260314)
    key_tokens = limit("key:shared", "tokens", "day", 120_000)
    agent_tokens = limit("agent:bob", "tokens", "month", 100_000)
    agent_requests = limit("agent:bob", "requests", "day", 150)
    limits = (key_tokens, agent_tokens, agent_requests)
    shadow = Shadow({x.id: 0.0 for x in limits}, {x.id: 0.0 for x in limits})
    settled_tokens = 0.0
    settled_requests = 0
    refusals = released = 0
    gave_up: list[list[Claim]] = []

    def check_invariants() -> None:
        snap = store.snapshot_now(limits, clock.now())
        for x in limits:
            u = snap[x.id]
            assert u.used <= x.amount + 1e-9, f"{x.id} committed {u.used} > {x.amount}"
            assert u.used + u.reserved <= x.amount + 1e-9
            assert u.used == pytest.approx(shadow.used[x.id])
            assert u.reserved == pytest.approx(shadow.reserved[x.id])

    def can_never_fit(claims: list[Claim]) -> bool:
        # Committed use only grows while the clock stands still: this request is lost for good.
        return any(shadow.used[c.limit.id] + c.amount > c.limit.amount for c in claims)

    async def request(i: int) -> None:
        nonlocal settled_tokens, settled_requests, refusals, released
        prompt = rng.randint(50, 800)
        max_tokens = rng.randint(100, 1_500)
        need = float(prompt + max_tokens)
        claims = [Claim(key_tokens, need), Claim(agent_tokens, need), Claim(agent_requests, 1)]
        await asyncio.sleep(rng.random() * 0.002)
        while True:
            expected = shadow.fits(claims)
            out = store.reserve_now(claims, clock.now())
            # Admitted exactly when every limit has room for the whole worst case: nothing is
            # refused while headroom exists, nothing admitted without it.
            assert out.ok == expected, (i, out.shortfall)
            if out.ok:
                break
            refusals += 1
            assert out.shortfall is not None
            s = out.shortfall
            assert s.taken + s.needed > s.limit.amount
            assert s.taken == pytest.approx(shadow.used[s.limit.id] + shadow.reserved[s.limit.id])
            if can_never_fit(claims):
                gave_up.append(claims)
                return
            await asyncio.sleep(rng.random() * 0.003)  # in-flight requests will free room
        for c in claims:
            shadow.reserved[c.limit.id] += c.amount
        rid = out.reservation_id
        assert rid is not None
        await asyncio.sleep(0)
        await asyncio.sleep(rng.random() * 0.003)
        if rng.random() < 0.15:  # the upstream failed: release, charge nothing
            await store.release(rid)
            for c in claims:
                shadow.reserved[c.limit.id] -= c.amount
            released += 1
        else:
            actual = float(prompt + rng.randint(0, max_tokens))
            assert store.settle_now(rid, Measure(tokens=actual, requests=1), clock.now())
            for c in claims:
                shadow.reserved[c.limit.id] -= c.amount
            shadow.used[key_tokens.id] += actual
            shadow.used[agent_tokens.id] += actual
            shadow.used[agent_requests.id] += 1
            settled_tokens += actual
            settled_requests += 1
        check_invariants()
        await asyncio.sleep(0)

    await asyncio.gather(*(request(i) for i in range(200)))

    snap = store.snapshot_now(limits, clock.now())
    assert snap[key_tokens.id].used == pytest.approx(settled_tokens)
    assert snap[agent_tokens.id].used == pytest.approx(settled_tokens)
    assert snap[agent_requests.id].used == settled_requests
    assert all(snap[x.id].reserved == pytest.approx(0) for x in limits)
    assert store.reservation_count() == 0
    # Contention really happened: refusals, retries that later got in, releases, losers.
    assert refusals > len(gave_up) > 0
    assert released > 0
    assert settled_requests > 60
    # Every request that was finally turned away could not fit even the final, settled state.
    for claims in gave_up:
        assert any(snap[c.limit.id].used + c.amount > c.limit.amount for c in claims)
