"""One suite, every LedgerStore: the embedded SQLite ledger and the shared PostgreSQL one.

PostgreSQL runs against the machine's server (127.0.0.1:5432), in a database created for
each test and dropped after; skipped when unreachable (fails on CI, see tests/scale/services.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from quotaflow.engine.stats import ModelStats
from quotaflow.storage.base import LedgerQuery, LedgerRow
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.storage.management import AlertRow, ManagedKeyRow
from quotaflow.testing import FrozenClock
from quotaflow.types import Measure
from tests.scale.services import create_database, drop_database, require_postgres

T0 = 1_773_489_600.0

Opener = Callable[..., Awaitable[Any]]


def row(i: int = 0, **kw: Any) -> LedgerRow:
    base: dict[str, Any] = {
        "request_id": f"req-{i}", "attempt": 1, "ts": T0 + i, "agent": "bob", "route": "smart",
        "provider": "openai", "key_id": "openai-1", "model": "gpt-4o-mini",
    }  # fmt: skip
    base.update(kw)
    return LedgerRow(**base)


def done(r: LedgerRow, tokens: int, cost: float = 0.0, status: str = "ok") -> LedgerRow:
    r.prompt_tokens = tokens // 2
    r.completion_tokens = tokens - tokens // 2
    r.total_tokens = tokens
    r.requests = 1
    r.cost_usd = cost
    r.status = status
    r.latency_ms = 12.5
    return r


class Backend:
    """Opens ledgers of one kind on one store; ``open(replica=…)`` opens another view."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.tmp = tmp
        self.dsn = ""
        self.open_ledgers: list[Any] = []

    async def setup(self) -> None:
        if self.kind == "postgres":
            require_postgres()
            self.dsn = await create_database()

    async def open(self, replica: str = "r1", stale_after_s: float = 900.0) -> Any:
        if self.kind == "sqlite":
            db: Any = SqliteLedger(self.tmp / "quotaflow.db")
        else:
            from quotaflow.storage.ledgers.postgres import PostgresLedger

            db = PostgresLedger(
                self.dsn, replica_id=replica, clock=FrozenClock(T0 + 1000),
                stale_after_s=stale_after_s, pool_size=3,
            )  # fmt: skip
        await db.open()
        self.open_ledgers.append(db)
        return db

    async def close(self, db: Any) -> None:
        await db.close()
        self.open_ledgers.remove(db)

    async def teardown(self) -> None:
        for db in list(self.open_ledgers):
            await db.close()
        if self.dsn:
            await drop_database(self.dsn)


@pytest.fixture
async def ledger(backend: Backend) -> Any:
    return await backend.open()


async def test_begin_finish_append_are_durable_when_they_return(backend, ledger) -> None:
    r = row(1)
    r.reserved_tokens = 900
    await ledger.begin(r)
    await ledger.finish(done(r, 300, 0.002))
    reported = done(row(2, source="reported", agent="alice"), 50)
    await ledger.append([reported])
    await backend.close(ledger)
    again = await backend.open()
    rows = await again.query(LedgerQuery(newest_first=False))
    assert [(x.request_id, x.total_tokens, x.status, x.source) for x in rows] == [
        ("req-1", 300, "ok", "proxy"),
        ("req-2", 50, "ok", "reported"),
    ]
    assert rows[0].reserved_tokens == 900 and rows[0].cost_usd == pytest.approx(0.002)
    assert rows[0].latency_ms == 12.5 and rows[0].estimated is False


async def test_each_row_keeps_the_door_it_came_in_by(backend, ledger) -> None:
    r = row(1, door="messages")
    await ledger.begin(r)
    await ledger.finish(done(r, 30))
    await ledger.append([done(row(2), 10), done(row(3, door="embeddings"), 5)])
    await backend.close(ledger)
    again = await backend.open()  # the door migration runs again on every open
    rows = await again.query(LedgerQuery(newest_first=False))
    assert [x.door for x in rows] == ["messages", "chat", "embeddings"]


async def test_concurrent_writes_are_group_committed_and_all_land(ledger) -> None:
    async def one(i: int) -> None:
        r = row(i)
        await ledger.begin(r)
        await ledger.finish(done(r, 10))

    await asyncio.gather(*(one(i) for i in range(200)))
    rows = await ledger.query(LedgerQuery(limit=1000))
    assert len(rows) == 200 and len({r.id for r in rows}) == 200
    assert all(r.status == "ok" for r in rows)
    assert await ledger.sum_scope("key:openai-1", 0) == Measure(2000, 200, 0)


async def test_query_filters_and_orders(ledger) -> None:
    await ledger.append([done(row(i, agent="bob" if i % 2 else "eve"), 10) for i in range(6)])
    newest = await ledger.query(LedgerQuery(agent="bob", limit=2))
    assert [r.request_id for r in newest] == ["req-5", "req-3"]
    span = await ledger.query(LedgerQuery(since=T0 + 2, until=T0 + 4, newest_first=False))
    assert [r.request_id for r in span] == ["req-2", "req-3"]


async def test_scope_sums_skip_pending_rows_and_honour_resets(ledger) -> None:
    await ledger.append([done(row(1), 100, 0.01), done(row(2, agent="eve"), 40)])
    await ledger.begin(row(3))  # in flight: not usage yet
    assert await ledger.sum_scope("key:openai-1", T0) == Measure(140, 2, pytest.approx(0.01))
    assert await ledger.sum_scope("agent:eve", T0) == Measure(40, 1, 0)
    assert await ledger.sum_scope("agent:bob@openai", T0) == Measure(100, 1, pytest.approx(0.01))
    assert [t for t, _ in await ledger.events_scope("global", T0)] == [T0 + 1, T0 + 2]
    await ledger.record_reset("key:openai-1", T0 + 1.5)
    await ledger.append([done(row(4), 7)])
    assert (await ledger.sum_scope("key:openai-1", T0)).tokens == 47
    assert [t for t, _ in await ledger.events_scope("key:openai-1", T0)] == [T0 + 2, T0 + 4]


async def test_settle_crashed_charges_pending_rows_at_their_worst_case(backend, ledger) -> None:
    r = row(1)
    r.reserved_tokens = 500
    r.extra["reserved_cost"] = 0.05
    await ledger.begin(r)
    await backend.close(ledger)
    again = await backend.open()
    assert await again.settle_crashed() == 1
    (x,) = await again.query(LedgerQuery())
    assert (x.status, x.total_tokens, x.requests, x.estimated) == ("crashed", 500, 1, True)
    assert x.cost_usd == pytest.approx(0.05)
    assert await again.settle_crashed() == 0


async def test_reports_group_usage(ledger) -> None:
    await ledger.append([
        done(row(1), 100, 0.1), done(row(2, agent="eve", key_id="k2"), 50, 0.2),
        done(row(3), 30, status="error"), done(row(901, source="probe", model="m"), 5),
        done(row(902, source="probe", model="m"), 0, status="error"),
    ])  # fmt: skip
    await ledger.begin(row(4))
    by_agent = await ledger.usage_by(["agent"], T0)
    assert by_agent[("bob",)] == Measure(135, 4, pytest.approx(0.1))
    assert by_agent[("eve",)] == Measure(50, 1, pytest.approx(0.2))
    assert (await ledger.usage_by([], T0, agent="eve"))[()] == Measure(50, 1, pytest.approx(0.2))
    keys = {t.group: t for t in await ledger.usage_totals("key", T0, T0 + 1000)}
    assert keys["openai-1"].attempts == 4 and keys["openai-1"].errors == 2
    assert keys["openai-1"].total_tokens == 135 and keys["openai-1"].provider == "openai"
    (total,) = await ledger.usage_totals("total")
    assert (total.group, total.attempts, total.cost_usd) == ("total", 5, pytest.approx(0.3))
    slots = await ledger.usage_totals("slot", T0, T0 + 100)
    assert [s.group for s in slots] == [str(int(T0))]
    assert [t for t, _ in await ledger.burn_events("agent:bob", T0, T0 + 4)] == [T0 + 1, T0 + 3]
    (probe,) = await ledger.probe_results()
    assert (probe.request_id, probe.status) == ("req-902", "error")
    assert sorted(await ledger.agents_seen(T0)) == ["bob", "eve"]
    assert [r.request_id for r in await ledger.request_rows("req-2")] == ["req-2"]


async def test_management_state_round_trips(backend, ledger) -> None:
    await ledger.save_provider("groq", "groq", T0)
    await ledger.save_provider("groq", "groq", T0 + 1)  # saving again replaces
    key = ManagedKeyRow("groq-1", "groq", b"\x00secret", "hash", 1000.0, T0)
    await ledger.save_key(key)
    await ledger.add_agent("bob", "h1", '{"name": "bob"}', T0)
    await ledger.set_setting("forced_provider", "groq")
    await ledger.add_alert(AlertRow(T0, "limit", "key:groq-1/tokens/day", "75%", "75 %"), 0.75)
    await ledger.set_alert_level("x", 0.9)
    stats = ModelStats("groq", "groq-1", "llama")
    await ledger.save_model_stats([stats], T0)
    await backend.close(ledger)
    db = await backend.open()
    assert await db.managed_providers() == [("groq", "groq")]
    assert await db.managed_keys() == [key]
    assert await db.stored_agents() == [("bob", "h1", '{"name": "bob"}')]
    assert await db.get_setting("forced_provider") == "groq"
    assert await db.get_setting("missing") is None
    (alert,) = await db.list_alerts()
    assert (alert.kind, alert.level, alert.id is not None) == ("limit", "75%", True)
    assert await db.alert_levels() == {"key:groq-1/tokens/day": 0.75, "x": 0.9}
    assert [(s.key_id, s.model) for s in await db.load_model_stats()] == [("groq-1", "llama")]
    await db.delete_key("groq-1")
    await db.delete_agent("bob")
    assert await db.managed_keys() == [] and await db.stored_agents() == []


async def test_every_sqlite_method_exists_in_every_backend(ledger) -> None:
    """The shared interface: whatever the embedded ledger can do, every backend can."""
    wanted = {
        n for n in dir(SqliteLedger) if not n.startswith("_") and callable(getattr(SqliteLedger, n))
    }
    missing = sorted(n for n in wanted if not callable(getattr(ledger, n, None)))
    assert missing == []


# -- PostgreSQL only: several replicas on one database ------------------------------------


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Backend]:
    b = Backend("postgres", tmp_path)
    await b.setup()
    yield b
    await b.teardown()


@pytest.mark.scale
async def test_replicas_settle_only_their_own_or_stale_pending_rows(pg) -> None:
    a = await pg.open("a", stale_after_s=600)  # its clock reads T0 + 1000
    b = await pg.open("b", stale_after_s=600)
    await a.begin(row(1, ts=T0 + 900))  # a's: in flight on a live replica
    await b.begin(row(2, ts=T0 + 900))  # b's
    await b.begin(row(3, ts=T0 + 100))  # b's, but older than stale_after_s: b died long ago
    assert await a.settle_crashed() == 2
    status = {r.request_id: r.status for r in await a.query(LedgerQuery())}
    assert status == {"req-1": "crashed", "req-2": "pending", "req-3": "crashed"}
    assert [t for t, _ in await a.pending_scope("key:openai-1", T0)] == [T0 + 900]


@pytest.mark.scale
async def test_migrations_run_once_when_replicas_start_together(pg) -> None:
    ledgers = await asyncio.gather(*(pg.open(f"r{i}") for i in range(4)))
    applied = [db.applied_migrations for db in ledgers]
    assert sorted(n for names in applied for n in names) == [
        "001_ledger.sql", "002_management.sql", "003_model_stats.sql", "004_probe_index.sql",
        "005_notify_outbox.sql",
        "006_door.sql", "007_rollups.sql",
    ]  # fmt: skip
    ids = await asyncio.gather(*(db.begin(row(i)) for i, db in enumerate(ledgers)))
    assert len(set(ids)) == 4  # each replica draws its own block of ids


async def test_management_changes_bump_the_version_and_settings_are_claimed_once(ledger) -> None:
    """Replicas poll ``mgmt_version`` to learn of other replicas' keys and agents."""
    assert await ledger.mgmt_version() == 0
    await ledger.add_agent("bob", "h1", '{"name": "bob"}', T0)
    await ledger.save_key(ManagedKeyRow("groq-1", "groq", b"\x00s", "hash", 10.0, T0))
    await ledger.save_provider("groq", "groq", T0)
    await ledger.delete_key("groq-1")
    await ledger.delete_agent("bob")
    assert await ledger.mgmt_version() == 5
    await ledger.set_setting("forced_provider", "groq")  # not a key or agent change
    assert await ledger.mgmt_version() == 5
    firsts = await asyncio.gather(*(ledger.claim_setting("token", f"h{i}") for i in range(5)))
    assert len(set(firsts)) == 1 and await ledger.get_setting("token") == firsts[0]
    assert await ledger.claim_setting("token", "other") == firsts[0]


async def test_an_agent_name_is_stored_once_even_by_concurrent_adds(backend, ledger) -> None:
    """Of concurrent adds of one agent name (here, or by a replica sharing the store), one is
    stored and answers True; the others change nothing (no agent is replaced by accident)."""
    other = await backend.open("r2") if backend.kind == "postgres" else ledger
    stores = [ledger, other] * 3
    won = await asyncio.gather(*(
        db.add_agent("bob", f"h{i}", f'{{"name": "bob", "i": {i}}}', T0 + i)
        for i, db in enumerate(stores)
    ))  # fmt: skip
    assert won.count(True) == 1, won
    w = won.index(True)
    assert await other.stored_agents() == [("bob", f"h{w}", f'{{"name": "bob", "i": {w}}}')]
    assert await ledger.add_agent("bob", "h9", '{"name": "bob"}', T0 + 9) is False
    assert await ledger.add_agent("eve", "h9", '{"name": "eve"}', T0 + 9) is True
    await ledger.delete_agent("bob")
    assert await other.add_agent("bob", "h10", '{"name": "bob"}', T0 + 10) is True


async def test_the_webhook_outbox_survives_a_restart_and_stores_an_event_once(
    backend, ledger
) -> None:
    from quotaflow.storage.outbox import OutboxRow

    first = OutboxRow("t1", "ev-1", '{"event": "threshold"}', T0, T0)
    await ledger.outbox_add([first, OutboxRow("t2", "ev-1", "{}", T0, T0)])
    await ledger.outbox_add([first])  # the same event again: a no-op
    due = await ledger.outbox_due(T0)
    assert [(r.target, r.event_id, r.attempts) for r in due] == [
        ("t1", "ev-1", 0),
        ("t2", "ev-1", 0),
    ]
    await ledger.outbox_retry(due[0].id, T0 + 10, "HTTP 500")
    await ledger.outbox_done(due[1].id, T0 + 1)
    await backend.close(ledger)
    again = await backend.open()
    assert await again.outbox_due(T0 + 5) == []
    (retry,) = await again.outbox_due(T0 + 10)
    assert (retry.event_id, retry.attempts, retry.body) == ("ev-1", 1, '{"event": "threshold"}')


@pytest.mark.scale
async def test_one_replica_takes_each_due_delivery_and_alert_episodes_read_alike(pg) -> None:
    """Replicas delivering from one outbox: each due row is taken by one of them only; and
    every replica reads a subject's episode (level, last alert) alike until it changes."""
    from quotaflow.storage.management import AlertRow
    from quotaflow.storage.outbox import OutboxRow

    a, b = await pg.open("a"), await pg.open("b")
    await a.outbox_add([OutboxRow("t1", "ev-1", "{}", T0, T0)])
    (row,) = await b.outbox_due(T0)
    assert row.id is not None
    taken = await asyncio.gather(
        a.outbox_claim(row.id, row.next_at, T0 + 60), b.outbox_claim(row.id, row.next_at, T0 + 60)
    )
    assert sorted(taken) == [False, True]
    assert await a.outbox_due(T0 + 30) == []  # taken: not due to anyone until the lease ends
    assert [r.event_id for r in await b.outbox_due(T0 + 60)] == ["ev-1"]

    assert await a.alert_episode("key:x") == await b.alert_episode("key:x") == (0.0, 0)
    await a.add_alert(AlertRow(T0, "limit", "key:x", "90%", "x at 90%"), 0.9)
    level, last = await b.alert_episode("key:x")
    assert level == 0.9 and last > 0


async def test_key_ids_seen_covers_every_trace_a_key_leaves(backend, ledger) -> None:
    """What a new key's id must not be: every id the store still remembers, compacted too."""
    assert await ledger.key_ids_seen() == set()
    await ledger.append([done(row(1, key_id="openai-3"), 40)])
    assert await ledger.compact(T0 + 3 * 86_400) == 1  # the row goes, its rollups stay
    assert await ledger.query(LedgerQuery()) == []
    await ledger.begin(row(2, ts=T0 + 4 * 86_400, key_id="openai-5"))  # still pending
    await ledger.set_setting("key_state:openai-6", "disabled@1")
    await ledger.set_setting("key_id:openai-9", "digest")
    await ledger.set_setting("forced_provider", "groq")  # not a key's
    await ledger.record_reset("key:openai-7", T0)
    await ledger.record_reset("provider:openai", T0)  # not a key's
    await ledger.set_alert_level("key:openai-8/tokens/day", 0.75)
    await ledger.save_model_stats([ModelStats("openai", "openai-10", "gpt-4o-mini")], T0)
    await backend.close(ledger)
    db = await backend.open()
    assert await db.key_ids_seen() == {
        "openai-3", "openai-5", "openai-6", "openai-7", "openai-8", "openai-9", "openai-10",
    }  # fmt: skip
