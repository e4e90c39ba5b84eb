"""Two gateways sharing Redis counters and a PostgreSQL ledger rank keys on the usage their
own reserve and settle replies showed (no snapshot script per request), and stay exact:

- many concurrent requests on both never overshoot a small limit;
- a view that another replica or a new window made stale never refuses a request, nor keeps
  a request off its key once the window rolled;
- a reserve that lost a race looks again at Redis itself, not at the view.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quotaflow.clock import SystemClock
from quotaflow.config.model import Config
from quotaflow.errors import QuotaExhausted
from quotaflow.gateway import CallContext, Gateway
from quotaflow.storage.base import LedgerQuery
from quotaflow.storage.counters.redis import VIEW_TTL_S, RedisCounterStore
from quotaflow.testing import FrozenClock
from tests.scale.gateways import chat, key, limits_of, make_config, replicas

pytestmark = pytest.mark.scale

T0 = 1_773_532_800.0 + 12 * 3600 + 30  # 12:00:30 UTC: mid-minute, mid-day


class Calls:
    """What a gateway asked of its counters, in order: recent / snapshot / reserve+ / reserve-."""

    def __init__(self, store: RedisCounterStore) -> None:
        self.log: list[str] = []
        recent, snapshot, reserve = store.recent, store.snapshot, store.reserve

        def spy_recent(*a: Any, **kw: Any) -> Any:
            out = recent(*a, **kw)
            self.log.append("recent" if out is not None else "recent:none")
            return out

        async def spy_snapshot(*a: Any, **kw: Any) -> Any:
            self.log.append("snapshot")
            return await snapshot(*a, **kw)

        async def spy_reserve(*a: Any, **kw: Any) -> Any:
            out = await reserve(*a, **kw)
            self.log.append("reserve+" if out.ok else "reserve-")
            return out

        store.recent = spy_recent  # type: ignore[method-assign]
        store.snapshot = spy_snapshot  # type: ignore[method-assign]
        store.reserve = spy_reserve  # type: ignore[method-assign]

    def take(self) -> list[str]:
        out, self.log = self.log, []
        return out


async def redis_usage(store: RedisCounterStore, cfg: Config, key_id: str, now: float) -> float:
    limits = limits_of(cfg, key_id)
    usages = await store.snapshot(limits, now)
    return max(u.taken for u in usages.values())


async def test_two_gateways_never_overshoot_small_limits_under_concurrency(
    redis_url_prefix: tuple[str, str], pg_dsn: str
) -> None:
    cfg = make_config([key(0, ("requests", "once", 7)), key(1, ("requests", "once", 4))])
    async with replicas(redis_url_prefix, pg_dsn, cfg, SystemClock()) as [
        (a, up_a, store_a),
        (b, up_b, _),
    ]:
        # Each replica's view is warm first (one answered request each), then both are hit
        # with far more concurrent requests than the limits allow.
        assert await chat(a) == "k0" and await chat(b) == "k0"

        async def one(gw: Gateway) -> str:
            try:
                return await chat(gw)
            except QuotaExhausted:
                return "429"

        results = await asyncio.gather(*(one(gw) for _ in range(30) for gw in (a, b)))
        now = a.clock.now()
        used = {k: await redis_usage(store_a, cfg, k, now) for k in ("k0", "k1")}
        rows = await a.ledger.query(LedgerQuery(limit=500))
    answered = [r for r in results if r != "429"]
    # 11 requests fit (7 + 4); two were the warm-up: exactly 9 more, not one over.
    assert len(answered) == 9, results
    assert answered.count("k0") == 5 and answered.count("k1") == 4
    assert used == {"k0": 7.0, "k1": 4.0}
    assert len(up_a.keys) + len(up_b.keys) == 11  # nothing went upstream beyond the limits
    assert sum(1 for r in rows if r.status == "ok") == 11


async def test_a_stale_view_never_refuses_while_redis_has_headroom(
    redis_url_prefix: tuple[str, str], pg_dsn: str
) -> None:
    clock = FrozenClock(T0)  # time stands still: the view never ages out by itself
    cfg = make_config([key(0, ("requests", "day", 3))])
    async with replicas(redis_url_prefix, pg_dsn, cfg, clock) as [(a, _, store_a), (b, _, _)]:
        calls = Calls(store_a)
        for _ in range(3):
            await chat(a)
        with pytest.raises(QuotaExhausted):
            await chat(a)  # full: refused, after a real look at Redis
        assert calls.take()[-2:] == ["recent", "snapshot"]
        # Another replica frees the key (seed 000's reset): A's view still says it is full.
        await b.reset_limits(limits_of(cfg, "k0"))
        assert store_a.recent(limits_of(cfg, "k0"), clock.now()) is not None
        calls.take()
        # The view says no; Redis says yes: the request is served, not refused.
        assert await chat(a) == "k0"
        assert calls.take() == ["recent", "snapshot", "reserve+"]
        assert await redis_usage(store_a, cfg, "k0", clock.now()) == 1.0


async def test_a_rolled_window_is_not_seen_through_the_old_windows_view(
    redis_url_prefix: tuple[str, str], pg_dsn: str
) -> None:
    clock = FrozenClock(T0 + 29.8)  # 0.2 s before the minute ends
    cfg = make_config([key(0, ("requests", "minute", 2)), key(1)])
    async with replicas(redis_url_prefix, pg_dsn, cfg, clock, n=1) as [(a, _, store_a)]:
        calls = Calls(store_a)
        assert [await chat(a) for _ in range(3)] == ["k0", "k0", "k1"]  # k0 full: falls back
        calls.take()
        clock.advance(0.3)  # a new minute, well within the view's age limit
        assert VIEW_TTL_S > 0.3
        # Not k1 (what the old minute's view would pick): k0 has its new window.
        assert await chat(a) == "k0"
        assert calls.take() == ["recent:none", "snapshot", "reserve+"]


async def test_a_lost_race_looks_again_at_redis_not_at_the_view(
    redis_url_prefix: tuple[str, str], pg_dsn: str
) -> None:
    clock = FrozenClock(T0)
    cfg = make_config([key(0, ("requests", "day", 2)), key(1, ("requests", "day", 1))])
    async with replicas(redis_url_prefix, pg_dsn, cfg, clock) as [(a, _, store_a), (b, _, _)]:
        calls = Calls(store_a)
        assert await chat(a) == "k0"  # A's view: k0 1 of 2, k1 0 of 1
        calls.take()
        assert [await chat(b), await chat(b)] == ["k0", "k1"]  # both full now, in Redis
        with pytest.raises(QuotaExhausted):
            await chat(a)
        # The view said k0 (then k1) had room; both reserves lost: the next look is a real
        # snapshot, and the refusal rests on it.
        assert calls.take() == ["recent", "reserve-", "reserve-", "snapshot"]
        # Served from the view when it is right: no snapshot script at all.
        await b.reset_limits(limits_of(cfg, "k1"))
        assert await chat(a) == "k1"
        assert calls.take() == ["recent", "snapshot", "reserve+"]  # view still said full
        clock.advance(VIEW_TTL_S)  # the view ages out: a real snapshot again
        with pytest.raises(QuotaExhausted):
            await chat(a)
        assert calls.take() == ["recent:none", "snapshot"]


async def test_a_clamped_plan_is_made_on_redis_numbers_not_the_view(
    redis_url_prefix: tuple[str, str], pg_dsn: str
) -> None:
    """Without max_tokens, a request near the limit is clamped to the headroom: a stale view
    may understate it, so the clamp is planned on a real snapshot."""
    clock = FrozenClock(T0)
    cfg = make_config([key(0, ("tokens", "day", 100))])
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with replicas(redis_url_prefix, pg_dsn, cfg, clock) as [(a, _, store_a), (b, _, _)]:
        calls = Calls(store_a)
        for _ in range(4):
            await a.chat({**body, "max_tokens": 8}, CallContext())  # 5 tokens each
        await b.reset_limits(limits_of(cfg, "k0"))  # A's view: 20 of 100 used; Redis: 0
        calls.take()
        out = await a.chat(dict(body), CallContext())
        assert calls.take() == ["recent", "snapshot", "reserve+"]
        rows = await a.ledger.request_rows(out.request_id)
    # Reserved: the whole headroom Redis had (100), not what the view left (80).
    assert [r.reserved_tokens for r in rows] == [100]
