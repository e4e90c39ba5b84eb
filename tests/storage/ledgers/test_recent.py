"""The serving ledger's last hour in memory (RecentView) answers what SQL answers: tokens
per provider, the latency percentiles of each minute's newest rows, requests by how they
ended — over randomized traffic (pending rows settling later, several attempts, refusals,
errors, crashes, other sources, late rows, minute edges, one commit mixing them all), after
a seed at open, a crash settlement, another process's writes and compaction."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from quotaflow.clock import FrozenClock
from quotaflow.storage.base import LedgerRow, RequestCounts
from quotaflow.storage.ledgers.recent import NEWEST, RecentView, read_seed
from quotaflow.storage.ledgers.sql import SqlLedger, retention_cutoff
from quotaflow.storage.ledgers.sqlite import SqliteLedger

T0 = 1_773_489_600.0  # a UTC midnight (a whole minute)
PROVIDERS = ("openai", "anthropic", "gemini")
FINAL = ("ok", "ok", "ok", "ok", "error", "aborted", "crashed")
QUANTILES = (0.5, 0.95)


class Traffic:
    """Randomized requests through a ledger's own begin / finish / append, as a gateway
    writes them (attempts of a request begin within a few minutes of its first)."""

    def __init__(self, ledger: SqliteLedger, clock: FrozenClock, seed: int) -> None:
        self.ledger = ledger
        self.clock = clock
        self.rnd = random.Random(seed)
        self.n = 0
        self.in_flight: list[LedgerRow] = []
        self.first: dict[str, float] = {}  # request → its first attempt's ts

    def _row(self, rid: str, attempt: int, ts: float, **kw: Any) -> LedgerRow:
        provider = self.rnd.choice(PROVIDERS)
        return LedgerRow(
            request_id=rid, attempt=attempt, ts=ts, agent="bob", route="smart",
            provider=provider, key_id=f"{provider}-1", model="m",
            reserved_tokens=self.rnd.randint(100, 2000), **kw,
        )  # fmt: skip

    def _final(self, r: LedgerRow, status: str) -> LedgerRow:
        tokens = 0 if status in ("error", "refused") else self.rnd.randint(0, 900)
        latency = round(self.rnd.uniform(5, 3000), 3) if self.rnd.random() < 0.9 else None
        return replace(
            r, status=status, total_tokens=tokens, requests=1, latency_ms=latency,
            cost_usd=tokens * 1e-6,
        )  # fmt: skip

    def _ts(self) -> float:
        now = self.clock.now()
        edge = (now // 60) * 60
        return self.rnd.choice(
            (now, now, now, edge, edge + 59.999, edge - 0.001, now - self.rnd.uniform(0, 200))
        )  # a late row now and then: it began minutes ago

    async def step(self) -> None:
        """One turn: a few writes at once (one group commit mixes inserts, settled rows and
        finishes), then the clock moves."""
        ops = []
        for _ in range(self.rnd.randint(1, 6)):
            kind = self.rnd.random()
            if kind < 0.45 or not self.in_flight:
                self.n += 1
                r = self._row(f"q{self.n}", 1, self._ts())
                self.first[r.request_id] = r.ts
                self.in_flight.append(r)
                ops.append(self.ledger.begin(r))
            elif kind < 0.8:
                r = self.in_flight.pop(self.rnd.randrange(len(self.in_flight)))
                status = self.rnd.choice(FINAL)
                ops.append(self.ledger.finish(self._final(r, status)))
                ts = max(r.ts, self.clock.now())
                # a retry, or a refusal: within the request's spread (REQUEST_SPREAD_S)
                if (
                    status != "ok"
                    and ts - self.first[r.request_id] < 280
                    and self.rnd.random() < 0.6
                ):
                    if self.rnd.random() < 0.3:
                        ops.append(self.ledger.append([self._row(r.request_id, r.attempt + 1, ts,
                                                                 status="refused")]))  # fmt: skip
                    else:
                        nxt = self._row(r.request_id, r.attempt + 1, ts)
                        self.in_flight.append(nxt)
                        ops.append(self.ledger.begin(nxt))
            else:  # booked after the fact: reported use, a probe, a refusal
                self.n += 1
                source = self.rnd.choice(("reported", "probe", "proxy"))
                status = "refused" if source == "proxy" else self.rnd.choice(("ok", "error"))
                r = self._final(self._row(f"q{self.n}", 1, self._ts(), source=source), status)
                ops.append(self.ledger.append([r]))
        await asyncio.gather(*ops)
        self.clock.advance(self.rnd.choice((0.0, 0.5, 3.0, 17.0, 41.0)))


async def serving(path: Path, clock: FrozenClock) -> SqliteLedger:
    ledger = SqliteLedger(path, clock=clock)
    ledger.keep_recent()
    await ledger.open()
    assert await ledger.recent_seeded()
    return ledger


async def writer_free(ledger: SqliteLedger) -> None:
    """Wait while the writer's connection is busy on a thread (the WAL starting over, a
    commit behind compaction): SQL answers then, not the view."""
    for _ in range(1000):
        if not ledger._thread_commit:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the writer's connection stayed busy")


async def view_of(ledger: SqliteLedger) -> RecentView:
    await writer_free(ledger)
    view = ledger._fresh_view()
    assert view is not None, "the view should answer"
    return view


async def assert_same(ledger: SqliteLedger, clock: FrozenClock) -> int:
    """Every read of the last hour the view answers equals SQL's; returns minutes checked."""
    view = await view_of(ledger)
    last = (clock.now() // 60) * 60
    checked = 0
    spans = [(last - 59 * 60, last + 60), (last - 17 * 60, last - 3 * 60), (last, last + 60)]
    for since, until in spans:
        for newest in (NEWEST, 3, 1):
            got = view.minute_stats(since, until, newest, QUANTILES)
            want = await SqlLedger.minute_stats(ledger, since, until, 60.0, newest, QUANTILES)
            assert got == want, (since, until, newest)
            checked += len(want)
        got_counts = view.request_counts(since, until)
        want_counts = await SqlLedger._request_counts_raw(ledger, since, until)
        assert got_counts == want_counts, (since, until)
    # what the dashboard asks: whole slots from the rollup, the partial one from the view
    since = last - 59 * 60
    assert await ledger.request_counts(since, None) == await SqlLedger.request_counts(
        ledger, since, None
    )
    return checked


@pytest.fixture
async def clock() -> FrozenClock:
    return FrozenClock(T0 + 7 * 3600 + 13.25)


@pytest.fixture
async def ledger(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[SqliteLedger]:
    db = await serving(tmp_path / "quotaflow.db", clock)
    yield db
    await db.close()


async def test_the_view_answers_what_sql_answers_over_randomized_traffic(
    ledger: SqliteLedger, clock: FrozenClock
) -> None:
    traffic = Traffic(ledger, clock, seed=21)
    checked = 0
    for i in range(700):  # ~2.5 hours: minutes leave the view, requests are forgotten
        await traffic.step()
        if i % 70 == 69:
            checked += await assert_same(ledger, clock)
    assert checked > 500
    minutes, in_flight, followed = (await view_of(ledger)).sizes()
    assert minutes <= 62
    assert in_flight == len(traffic.in_flight)
    assert followed < traffic.n / 4  # answered requests are not followed


async def test_capped_minutes_take_the_newest_rows(
    ledger: SqliteLedger, clock: FrozenClock
) -> None:
    """More rows in a minute than the sample: the percentiles are those of its newest rows,
    pending rows among them settling later."""
    traffic = Traffic(ledger, clock, seed=5)
    traffic.rnd.random()
    for _ in range(NEWEST // 3 + 40):
        await traffic.step()
        clock.set((clock.now() // 60) * 60 + 1.0)  # all in one minute
    await assert_same(ledger, clock)
    while traffic.in_flight:
        r = traffic.in_flight.pop()
        await ledger.finish(traffic._final(r, "ok"))
    await assert_same(ledger, clock)


async def test_a_view_seeded_at_open_and_a_crash_settlement(
    tmp_path: Path, clock: FrozenClock
) -> None:
    path = tmp_path / "quotaflow.db"
    first = await serving(path, clock)
    traffic = Traffic(first, clock, seed=8)
    for _ in range(300):
        await traffic.step()
    assert traffic.in_flight
    await first.close()  # as a crash would: rows left pending
    again = await serving(path, clock)
    try:
        await assert_same(again, clock)  # seeded from the rows, pending ones too
        assert await again.settle_crashed() == len(traffic.in_flight)
        await assert_same(again, clock)
        more = Traffic(again, clock, seed=9)
        more.n = traffic.n
        for _ in range(100):
            await more.step()
        await assert_same(again, clock)
    finally:
        await again.close()


async def test_writes_of_another_process_are_seen(
    tmp_path: Path, ledger: SqliteLedger, clock: FrozenClock
) -> None:
    """A command-line tool writing to the same file: the serving ledger reads SQL at once,
    then answers from a view seeded again."""
    traffic = Traffic(ledger, clock, seed=3)
    for _ in range(60):
        await traffic.step()
    other = SqliteLedger(tmp_path / "quotaflow.db", clock=clock)  # a tool: no view
    await other.open()
    try:
        ts = clock.now() - 30
        probe = LedgerRow(
            request_id="probe-1", attempt=1, ts=ts, provider="openai", key_id="openai-1",
            model="m", status="ok", total_tokens=12_345, source="probe", latency_ms=1.0,
        )  # fmt: skip
        await other.append([probe])
        since = (clock.now() // 60) * 60 - 59 * 60
        until = since + 3600
        got = await ledger.minute_stats(since, until, 60.0, NEWEST, QUANTILES)
        want = await other.minute_stats(since, until, 60.0, NEWEST, QUANTILES)
        assert got == want
        assert got[(ts // 60) * 60].tokens["openai"] >= 12_345
        assert await ledger.recent_seeded()
        await assert_same(ledger, clock)
        for _ in range(60):
            await traffic.step()
        await assert_same(ledger, clock)
    finally:
        await other.close()


async def test_compaction_changes_nothing_of_the_hour(
    ledger: SqliteLedger, clock: FrozenClock
) -> None:
    """Compaction (at the shortest retention, one day) deletes no row of the last hour; its
    commits are another connection's, so the view is seeded again and stays equal."""
    old = [
        LedgerRow(request_id=f"old{i}", attempt=1, ts=clock.now() - 3 * 86400 + i, status="ok",
                  provider="openai", total_tokens=10, requests=1)
        for i in range(50)
    ]  # fmt: skip
    await ledger.append(old)
    traffic = Traffic(ledger, clock, seed=11)
    for _ in range(120):
        await traffic.step()
    before = await assert_same(ledger, clock)
    assert await ledger.compact(retention_cutoff(clock.now(), 1.0)) == len(old)
    assert ledger._fresh_view() is None  # another connection committed: SQL until seeded
    assert await ledger.recent_seeded()
    assert await assert_same(ledger, clock) == before


async def test_a_tool_reads_sql(tmp_path: Path, clock: FrozenClock) -> None:
    """Without keep_recent() (every command-line tool), nothing is kept in memory."""
    tool = SqliteLedger(tmp_path / "quotaflow.db", clock=clock)
    await tool.open()
    try:
        await tool.append([LedgerRow(request_id="a", attempt=1, ts=clock.now(), status="ok")])
        assert tool._fresh_view() is None
        assert tool._recent is None
        since = (clock.now() // 60) * 60
        got = await tool.minute_stats(since, since + 60, 60.0, NEWEST, QUANTILES)
        assert got[since].tokens == {"": 0.0}
        assert await tool.request_counts(since, since + 60) == RequestCounts(1, 0, 0)
    finally:
        await tool.close()


async def test_the_seed_reads_the_hour_not_the_ledger(
    ledger: SqliteLedger, clock: FrozenClock
) -> None:
    """Every statement of the seed finds the hour's rows (or the rows in flight) through an
    index: none walks the whole ledger (grouped by the request-id column, SQLite would walk
    that index from end to end — seconds at 10M rows)."""
    traffic = Traffic(ledger, clock, seed=2)
    for _ in range(50):
        await traffic.step()
    plans: list[str] = []

    class Explained:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
            for *_, detail in self.db.execute("EXPLAIN QUERY PLAN " + sql, params):
                plans.append(f"{detail}  <- {sql[:60]}")
            return self.db.execute(sql, params)

    db = sqlite3.connect(ledger.path)
    try:
        read_seed(Explained(db), clock.now())  # type: ignore[arg-type]
    finally:
        db.close()
    walks = [p for p in plans if p.startswith("SCAN ledger") and "ledger_pending" not in p]
    assert plans and walks == []


async def test_commits_while_a_view_is_seeded_are_kept(tmp_path: Path, clock: FrozenClock) -> None:
    """What the writer commits while a seed reads its snapshot (a crash settlement at open,
    traffic after another process's write) is replayed on top of the seed, once."""
    path = tmp_path / "quotaflow.db"
    first = await serving(path, clock)
    traffic = Traffic(first, clock, seed=13)
    for _ in range(200):
        await traffic.step()
    await first.close()
    again = SqliteLedger(path, clock=clock)
    again.keep_recent()
    await again.open()  # the seed starts; the crash settlement commits meanwhile
    try:
        assert await again.settle_crashed() == len(traffic.in_flight)
        assert await again.recent_seeded()
        await assert_same(again, clock)
        more = Traffic(again, clock, seed=14)
        more.n = traffic.n
        other = SqliteLedger(path, clock=clock)
        await other.open()
        await other.append([LedgerRow(request_id="x", attempt=1, ts=clock.now(), status="ok")])
        await other.close()
        assert again._fresh_view() is None  # seeding again

        async def steps() -> None:
            for _ in range(30):
                await more.step()

        await asyncio.gather(again.recent_seeded(), steps())
        assert await again.recent_seeded()
        await assert_same(again, clock)
    finally:
        await again.close()


async def test_while_the_writer_commits_on_a_thread_sql_answers(
    ledger: SqliteLedger, clock: FrozenClock
) -> None:
    """A commit waiting on a thread (a RESTART checkpoint, compaction) holds the writer's
    connection: the view is not asked to check its version then, SQL answers."""
    traffic = Traffic(ledger, clock, seed=17)
    for _ in range(30):
        await traffic.step()
    assert ledger._fresh_view() is not None
    ledger._thread_commit = True
    try:
        assert ledger._fresh_view() is None
        since = (clock.now() // 60) * 60 - 59 * 60
        got = await ledger.minute_stats(since, since + 3600, 60.0, NEWEST, QUANTILES)
        assert got == await SqlLedger.minute_stats(
            ledger, since, since + 3600, 60.0, NEWEST, QUANTILES
        )
    finally:
        ledger._thread_commit = False
    assert ledger._fresh_view() is not None


async def test_the_wal_starting_over_keeps_the_view(tmp_path: Path, clock: FrozenClock) -> None:
    """Starting the WAL over ends with one small write: made on the writer's own
    connection, it is not another connection's change, so the view keeps answering."""
    ledger = SqliteLedger(tmp_path / "quotaflow.db", clock=clock, checkpoint_frames=40)
    ledger.keep_recent()
    await ledger.open()
    try:
        assert await ledger.recent_seeded()
        ck = ledger.checkpointer
        assert ck is not None
        traffic = Traffic(ledger, clock, seed=23)
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while ck.restarts < 2:
            assert loop.time() < end, "the WAL never started over"
            await traffic.step()
            await asyncio.sleep(0)
        got = await ledger.fetch("SELECT value FROM ledger_meta WHERE name='wal_restarts'")
        assert got and got[0][0] >= 2
        await writer_free(ledger)
        assert ledger._fresh_view() is not None  # still the view: no other writer was seen
        since = (clock.now() // 60) * 60 - 59 * 60
        got_view = await ledger.minute_stats(since, since + 3600, 60.0, NEWEST, QUANTILES)
        assert got_view == await SqlLedger.minute_stats(
            ledger, since, since + 3600, 60.0, NEWEST, QUANTILES
        )
    finally:
        await ledger.close()
