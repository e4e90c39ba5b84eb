"""The embedded ledger: durability, group commit, scope sums with resets, crash settlement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.storage.base import LedgerQuery, LedgerRow
from quotaflow.storage.ledgers.sql import scope_condition
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.types import Measure

T0 = 1_773_489_600.0


def row(i: int = 0, **kw: Any) -> LedgerRow:
    base: dict[str, Any] = {
        "request_id": f"req-{i}",
        "attempt": 1,
        "ts": T0 + i,
        "agent": "bob",
        "route": "smart",
        "provider": "openai",
        "key_id": "openai-1",
        "model": "gpt-4o-mini",
    }
    base.update(kw)
    return LedgerRow(**base)


def done(r: LedgerRow, tokens: int, cost: float = 0.0) -> LedgerRow:
    r.prompt_tokens = tokens // 2
    r.completion_tokens = tokens - tokens // 2
    r.total_tokens = tokens
    r.requests = 1
    r.cost_usd = cost
    r.status = "ok"
    r.latency_ms = 12.5
    return r


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    db = SqliteLedger(tmp_path / "quotaflow.db")
    await db.open()
    yield db
    await db.close()


async def reopen(db: SqliteLedger) -> SqliteLedger:
    await db.close()
    again = SqliteLedger(db.path)
    await again.open()
    return again


async def test_begin_finish_append_survive_a_reopen(ledger: SqliteLedger) -> None:
    r = row(1, reserved_tokens=900, extra={"reserved_cost": 0.01})
    await ledger.begin(r)
    await ledger.finish(done(r, 300, 0.002))
    await ledger.append([row(2, status="reported", source="reported", total_tokens=50, requests=1)])
    again = await reopen(ledger)
    try:
        rows = await again.query(LedgerQuery(newest_first=False))
        assert [(x.id, x.request_id, x.status, x.total_tokens) for x in rows] == [
            (1, "req-1", "ok", 300),
            (2, "req-2", "reported", 50),
        ]
        first = rows[0]
        assert (first.prompt_tokens, first.completion_tokens, first.requests) == (150, 150, 1)
        assert first.cost_usd == pytest.approx(0.002)
        assert first.latency_ms == 12.5
        assert first.reserved_tokens == 900
        assert first.extra["reserved_cost"] == pytest.approx(0.01)
        assert rows[1].source == "reported"
        # Ids continue after the highest one on disk.
        await again.begin(row(3))
        (third,) = await again.query(LedgerQuery(limit=1))
        assert (third.id, third.request_id, third.status) == (3, "req-3", "pending")
    finally:
        await again.close()


async def test_two_processes_can_write_one_ledger(ledger: SqliteLedger) -> None:
    """A CLI command writing beside a running server: ids never collide, finishes find their rows."""
    other = SqliteLedger(ledger.path)
    await other.open()
    try:
        a, b = row(1, reserved_tokens=10), row(2, reserved_tokens=10)
        b.request_id = "other-process-1"
        await ledger.begin(a)
        await other.begin(b)
        await other.finish(done(b, 7, 0.0))
        await ledger.finish(done(a, 9, 0.0))
        rows = await ledger.query(LedgerQuery(newest_first=False))
        assert [(x.id, x.request_id, x.status, x.total_tokens) for x in rows] == [
            (1, "req-1", "ok", 9),
            (2, "other-process-1", "ok", 7),
        ]
    finally:
        await other.close()


async def test_begin_is_durable_when_it_returns(ledger: SqliteLedger) -> None:
    """A second connection sees the pending row as soon as ``begin`` returns."""
    import sqlite3

    await ledger.begin(row(1, reserved_tokens=10))
    with sqlite3.connect(ledger.path) as other:
        assert other.execute("SELECT request_id, status FROM ledger").fetchall() == [
            ("req-1", "pending")
        ]


async def test_many_concurrent_begins_share_few_transactions(ledger: SqliteLedger) -> None:
    batches: list[int] = []
    real_commit = ledger._commit

    def counting_commit(db: Any, parts: Any, size: int) -> Exception | None:
        batches.append(size)
        return real_commit(db, parts, size)

    ledger._commit = counting_commit  # type: ignore[method-assign]
    await asyncio.gather(*(ledger.begin(row(i)) for i in range(100)))
    assert sum(batches) == 100
    assert len(batches) <= 3, batches
    rows = await ledger.query(LedgerQuery(limit=1_000))
    assert sorted(r.id for r in rows) == list(range(1, 101))


async def test_sequential_writes_each_commit_before_returning(ledger: SqliteLedger) -> None:
    batches: list[int] = []
    real_commit = ledger._commit

    def counting_commit(db: Any, parts: Any, size: int) -> Exception | None:
        batches.append(size)
        return real_commit(db, parts, size)

    ledger._commit = counting_commit  # type: ignore[method-assign]
    for i in range(3):
        await ledger.begin(row(i))
        assert len(batches) == i + 1
    assert batches == [1, 1, 1]


async def test_query_filters_and_orders(ledger: SqliteLedger) -> None:
    await ledger.append(
        [
            row(1, agent="bob", provider="openai", status="ok"),
            row(2, agent="alice", provider="anthropic", key_id="anthropic-1", status="ok"),
            row(3, agent="bob", provider="anthropic", key_id="anthropic-1", status="error"),
        ]
    )
    newest = await ledger.query(LedgerQuery())
    assert [r.request_id for r in newest] == ["req-3", "req-2", "req-1"]
    bob = await ledger.query(LedgerQuery(agent="bob", newest_first=False))
    assert [r.request_id for r in bob] == ["req-1", "req-3"]
    assert [r.request_id for r in await ledger.query(LedgerQuery(key_id="anthropic-1"))] == [
        "req-3",
        "req-2",
    ]
    window = await ledger.query(LedgerQuery(since=T0 + 2, until=T0 + 3))
    assert [r.request_id for r in window] == ["req-2"]
    assert len(await ledger.query(LedgerQuery(limit=1))) == 1


async def test_sum_scope_per_scope_kind(ledger: SqliteLedger) -> None:
    await ledger.append(
        [
            done(row(1, agent="bob", provider="openai", key_id="openai-1", route="smart"), 100, 0.125),
            done(row(2, agent="bob", provider="anthropic", key_id="anth-1", route="smart"), 200, 0.25),
            done(row(3, agent="alice", provider="openai", key_id="openai-2", route="fast"), 400, 0.5),
            row(4, agent="bob", provider="openai", key_id="openai-1", status="pending", total_tokens=999),
        ]
    )  # fmt: skip
    since = T0

    async def tokens(scope: str) -> float:
        return (await ledger.sum_scope(scope, since)).tokens

    assert await tokens("key:openai-1") == 100  # the pending row does not count
    assert await tokens("agent:bob") == 300
    assert await tokens("agent:bob@anthropic") == 200
    assert await tokens("route:smart") == 300
    assert await tokens("provider:openai") == 500
    assert await tokens("global") == 700
    m = await ledger.sum_scope("agent:alice", since)
    assert m == Measure(tokens=400, requests=1, cost=0.5)
    assert await tokens("key:nobody") == 0
    # Only rows since the instant count.
    assert (await ledger.sum_scope("global", T0 + 2)).tokens == 600


def test_unknown_scope_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown limit scope 'team:x'"):
        scope_condition("team:x")


async def test_sum_scope_honours_the_latest_reset(ledger: SqliteLedger) -> None:
    await ledger.append([done(row(i, key_id="k"), 100) for i in range(1, 6)])  # ts T0+1 … T0+5
    assert (await ledger.sum_scope("key:k", T0)).tokens == 500
    await ledger.record_reset("key:k", T0 + 3)
    assert (await ledger.sum_scope("key:k", T0)).tokens == 300  # T0+3, +4, +5
    # A window that starts after the reset is not widened by it.
    assert (await ledger.sum_scope("key:k", T0 + 5)).tokens == 100
    await ledger.record_reset("key:k", T0 + 5)
    await ledger.record_reset("key:k", T0 + 4)  # an older reset recorded later: the latest wins
    assert (await ledger.sum_scope("key:k", T0)).tokens == 100
    # Other scopes are unaffected.
    assert (await ledger.sum_scope("agent:bob", T0)).tokens == 500
    events = await ledger.events_scope("key:k", T0)
    assert events == [(T0 + 5, Measure(100, 1, 0))]


async def test_events_scope_lists_what_counts_in_time_order(ledger: SqliteLedger) -> None:
    await ledger.append(
        [
            done(row(3, key_id="k"), 30, 0.375),
            done(row(1, key_id="k"), 10, 0.125),
            row(2, key_id="k", status="error"),  # consumed nothing: left out
            row(4, key_id="k", status="pending", total_tokens=5),  # in flight: left out
            done(row(5, key_id="other"), 50),
        ]
    )
    events = await ledger.events_scope("key:k", T0)
    assert events == [
        (T0 + 1, Measure(10, 1, 0.125)),
        (T0 + 3, Measure(30, 1, 0.375)),
    ]
    assert await ledger.events_scope("key:k", T0 + 2) == [(T0 + 3, Measure(30, 1, 0.375))]


async def test_settle_crashed_charges_the_reserved_worst_case(ledger: SqliteLedger) -> None:
    crashed = row(1, key_id="k", reserved_tokens=1_200, extra={"reserved_cost": 0.0625})
    await ledger.begin(crashed)
    finished = row(2, key_id="k", reserved_tokens=500)
    await ledger.begin(finished)
    await ledger.finish(done(finished, 300, 0.015625))
    again = await reopen(ledger)  # the process "died" with row 1 still pending
    try:
        assert (await again.sum_scope("key:k", T0)).tokens == 300
        assert await again.settle_crashed() == 1
        assert await again.settle_crashed() == 0
        (r,) = await again.query(LedgerQuery(key_id="k", limit=1, newest_first=False))
        assert (r.status, r.total_tokens, r.requests, r.estimated) == ("crashed", 1_200, 1, True)
        assert r.cost_usd == 0.0625
        assert r.detail is not None and "crash" in r.detail
        m = await again.sum_scope("key:k", T0)
        assert m == Measure(1_500, 2, 0.078125)
    finally:
        await again.close()


async def test_writes_before_open_or_after_close_are_refused(tmp_path: Path) -> None:
    db = SqliteLedger(tmp_path / "q.db")
    with pytest.raises(RuntimeError, match="not open"):
        await db.begin(row(1))
    await db.open()
    await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await asyncio.wait_for(db.begin(row(2)), 2)


async def test_close_commits_writes_still_queued_and_returns(tmp_path: Path) -> None:
    db = SqliteLedger(tmp_path / "q.db")
    await db.open()
    writes = [asyncio.create_task(db.begin(row(i))) for i in range(5)]
    await asyncio.sleep(0)  # the writes are queued, the writer has not run yet
    await asyncio.wait_for(db.close(), 2)
    assert all(t.done() and t.exception() is None for t in writes)
    again = SqliteLedger(db.path)
    await again.open()
    try:
        assert len(await again.query(LedgerQuery())) == 5
    finally:
        await again.close()


async def test_migrations_are_idempotent(ledger: SqliteLedger) -> None:
    await ledger.begin(row(1))
    again = await reopen(ledger)
    try:
        assert len(await again.query(LedgerQuery())) == 1
        tables = await again.fetch(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
        )
        assert ("ledger",) in tables
        assert ("resets",) in tables
        (mode,) = (await again.fetch("PRAGMA journal_mode"))[0]
        assert mode == "wal"
    finally:
        await again.close()


async def test_latest_probe_verdicts_are_found_by_index_not_scan(ledger: SqliteLedger) -> None:
    """The key tester's verdicts are read at every start: a lookup, even on a huge ledger."""
    plan = await ledger.fetch(
        "EXPLAIN QUERY PLAN SELECT MAX(id) FROM ledger WHERE source='probe' "
        "AND status!='pending' AND ts>=? GROUP BY key_id, model",
        (0.0,),
    )
    details = " ".join(str(step[-1]) for step in plan)
    assert "ledger_probe" in details, details
