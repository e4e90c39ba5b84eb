"""WAL checkpoints of the embedded ledger run on a thread of their own, never in a commit."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.storage.base import LedgerRow
from quotaflow.storage.ledgers.checkpoint import Checkpointer
from quotaflow.storage.ledgers.sqlite import SqliteLedger

T0 = 1_773_489_600.0
TRIGGER = 40  # frames: small, so a few hundred commits cross it many times


def row(i: int) -> LedgerRow:
    return LedgerRow(
        request_id=f"req-{i}",
        attempt=1,
        ts=T0 + i,
        agent="bob",
        route="smart",
        provider="openai",
        key_id="openai-1",
        model="gpt-4o-mini",
        detail="x" * 200,
    )


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    db = SqliteLedger(tmp_path / "quotaflow.db", checkpoint_frames=TRIGGER)
    await db.open()
    yield db
    await db.close()


def writer(ledger: SqliteLedger) -> sqlite3.Connection:
    assert ledger._db is not None
    return ledger._db


def checkpointer(ledger: SqliteLedger) -> Checkpointer:
    assert ledger.checkpointer is not None
    return ledger.checkpointer


async def until(check: object, timeout_s: float = 10.0) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not check():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def writes_until_the_wal_is_under_its_limit(
    ledger: SqliteLedger, first: int, timeout_s: float = 30.0
) -> int:
    """Go on writing, a row at a time, until the WAL holds fewer frames than its limit (the
    checkpoint thread runs when it gets the CPU); returns how many rows there are then."""
    ck = checkpointer(ledger)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    i = first
    while True:
        await ledger.begin(row(i))
        i += 1
        frames = ck.frames()
        if frames is not None and frames[0] < ck.limit_frames:
            return i
        assert loop.time() < end, f"the WAL stayed at {frames} frames"
        await asyncio.sleep(0.01)


async def test_the_writer_never_checkpoints_and_a_thread_keeps_the_wal_bounded(
    ledger: SqliteLedger,
) -> None:
    assert ledger._db is not None
    # SQLite's own checkpoint-inside-COMMIT (on the event loop) is off for the writer.
    assert ledger._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert any(t.name == "quotaflow-ledger-checkpoint" for t in threading.enumerate())
    ck = checkpointer(ledger)
    for i in range(600):  # one commit each: many WAL frames, far past the trigger
        await ledger.begin(row(i))
    # Without checkpoints 600 commits leave well over a thousand frames in the WAL, and it
    # only grows. With them, as writes go on, it is copied and starts over.
    await writes_until_the_wal_is_under_its_limit(ledger, 600)
    assert ck.passive + ck.restarts > 0


async def test_a_row_is_readable_from_a_fresh_connection_when_its_write_returns(
    ledger: SqliteLedger,
) -> None:
    for i in range(300):  # checkpoints come and go meanwhile
        await ledger.begin(row(i))
        fresh = sqlite3.connect(ledger.path)
        try:
            got = fresh.execute(
                "SELECT COUNT(*) FROM ledger WHERE request_id=?", (f"req-{i}",)
            ).fetchone()
        finally:
            fresh.close()
        assert got == (1,)


async def test_an_old_reader_cannot_make_the_wal_grow_for_ever(ledger: SqliteLedger) -> None:
    ck = checkpointer(ledger)
    reader = sqlite3.connect(ledger.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM ledger").fetchone()  # holds its snapshot
        for i in range(400):
            await ledger.begin(row(i))
        # The reader pins the WAL: it could only grow, and the checkpointer saw it too big.
        await until(lambda: ck.largest_wal >= ck.limit_frames)
        reader.execute("COMMIT")
    finally:
        reader.close()
    restarts = ck.restarts
    # The reader is gone: a RESTART lets the WAL start over.
    n = await writes_until_the_wal_is_under_its_limit(ledger, 400)
    assert ck.restarts > restarts
    rows = await ledger.fetch("SELECT COUNT(*) FROM ledger")
    assert rows == [(n,)]


class _Timed:
    """A connection whose statements are timed (RESTART checkpoints only)."""

    def __init__(self, db: sqlite3.Connection, spans: list[tuple[float, float]]) -> None:
        self._db, self._spans = db, spans

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        t0 = time.perf_counter()
        try:
            return self._db.execute(sql, *args)
        finally:
            if "RESTART" in sql:
                self._spans.append((t0, time.perf_counter()))

    def close(self) -> None:
        self._db.close()


async def test_the_wal_starts_over_between_commits_never_during_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RESTART checkpoint holds the write lock: a commit made meanwhile would wait for it
    (in SQLite's busy handler, by sleeps of 1, 2, 5, 10 ms...). The writer runs it itself,
    between two commits, so none is ever under way while one runs."""
    restarts: list[tuple[float, float]] = []
    commits: list[tuple[float, float]] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        return _Timed(real_connect(*args, **kwargs), restarts)

    class Sqlite3:  # the checkpointer's view of the sqlite3 module: connections timed
        def __getattr__(self, name: str) -> Any:
            return connect if name == "connect" else getattr(sqlite3, name)

    monkeypatch.setattr("quotaflow.storage.ledgers.checkpoint.sqlite3", Sqlite3())
    real_commit = SqliteLedger._commit

    def commit(self: SqliteLedger, db: sqlite3.Connection, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_commit(self, db, *args)
        finally:
            commits.append((t0, time.perf_counter()))

    monkeypatch.setattr(SqliteLedger, "_commit", commit)
    ledger = SqliteLedger(tmp_path / "quotaflow.db", checkpoint_frames=TRIGGER)
    await ledger.open()
    try:
        ck = checkpointer(ledger)
        loop = asyncio.get_running_loop()
        end = loop.time() + 60.0
        n = 0

        def done() -> bool:
            return ck.restarts >= 2 and len(restarts) >= 2

        async def writer(first: int) -> None:
            # A refused restart is tried again only at a later commit: the writers go on
            # until two have run (at least 400 rows each), not for a fixed count of rows.
            nonlocal n
            i = first
            while i < first + 400 or not done():
                assert loop.time() < end, f"{ck.restarts} restarts after {n} rows"
                await ledger.begin(row(i))
                i += 1
                n += 1

        # Four writers at once: commits keep coming while the WAL is started over.
        await asyncio.gather(*(writer(k * 1_000_000) for k in range(4)))
        assert done()
        count = await ledger.fetch("SELECT COUNT(*) FROM ledger")
    finally:
        await ledger.close()
    assert n >= 1600 and count == [(n,)]
    overlapping = [(r, c) for r in restarts for c in commits if r[0] < c[1] and c[0] < r[1]]
    assert not overlapping, f"{len(overlapping)} commits ran during a RESTART checkpoint"


async def test_a_restart_writes_the_new_wal_header_itself(ledger: SqliteLedger) -> None:
    """The first commit after the WAL starts over writes its header and fsyncs it: the
    restart makes that commit itself, so it is not the next request's on the event loop."""
    ck = checkpointer(ledger)
    for i in range(300):
        await ledger.begin(row(i))
    await until(lambda: ck.passive > 0)
    await until(lambda: not ck._copying)
    for i in range(300, 310):  # frames the WAL holds now, whether or not it started over
        await ledger.begin(row(i))
    before = ck.frames()
    assert before is not None and before[0] > 20
    for _ in range(100):  # not while the copying thread or the writer is at it
        if await asyncio.to_thread(ck.restart, writer(ledger)):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the WAL never started over")
    after = ck.frames()
    assert after is not None
    assert after[0] <= 2, f"the WAL did not start over: {before} -> {after}"
    got = await ledger.fetch("SELECT value FROM ledger_meta WHERE name='wal_restarts'")
    assert got and got[0][0] >= 1
    assert await ledger.fetch("SELECT COUNT(*) FROM ledger") == [(310,)]


async def test_a_restart_gives_up_on_an_old_reader_quickly(ledger: SqliteLedger) -> None:
    ck = checkpointer(ledger)
    for i in range(200):
        await ledger.begin(row(i))
    reader = sqlite3.connect(ledger.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM ledger").fetchone()  # holds its snapshot
        await ledger.begin(row(200))  # a frame the reader does not see
        refused = ck.restarts_refused
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while ck.restarts_refused == refused:  # (not tried while the copying thread is at it)
            assert loop.time() < end, "the restart was never refused"
            await until(lambda: not ck._copying)
            assert not await asyncio.to_thread(ck.restart, writer(ledger))
        assert ck.restarts_refused == refused + 1
        assert not ck.restart_due()  # not tried again at once
    finally:
        reader.execute("COMMIT")
        reader.close()
    await ledger.begin(row(201))
    assert await ledger.fetch("SELECT COUNT(*) FROM ledger") == [(202,)]


# Another process tries to take the WAL index's "dead man switch" byte (SQLite's unix VFS:
# byte 128 of the -shm file, read-locked by every process using the database); it gets it
# only if this process holds no lock there.
_DMS_PROBE = """
import fcntl, sys
with open(sys.argv[1], "r+b") as f:
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]))
    except OSError:
        print("held")
    else:
        print("free")
"""


async def test_reading_the_wal_index_keeps_sqlite_s_locks(ledger: SqliteLedger) -> None:
    """Closing any descriptor of a file drops every POSIX lock the process holds on it. The
    checkpointer reads the -shm file through a descriptor of its own: closed, SQLite's lock
    would go with it, the next process to open the database would truncate the WAL index
    under this one, and the server would die of SIGBUS (seen in a test run)."""
    for i in range(50):
        await ledger.begin(row(i))
    assert checkpointer(ledger).frames() is not None  # the -shm file has been read
    shm = ledger.path.with_name(ledger.path.name + "-shm")
    assert await lock_seen_from_another_process(shm, 128, 1) == "held"
    await ledger.begin(row(50))
    assert await ledger.fetch("SELECT COUNT(*) FROM ledger") == [(51,)]


async def lock_seen_from_another_process(path: Path, start: int, length: int) -> str:
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DMS_PROBE, str(path), str(start), str(length),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await probe.communicate()
    return out.decode().strip()


async def test_flushing_the_database_keeps_sqlite_s_lock_on_it(ledger: SqliteLedger) -> None:
    """The same holds for the database file, which the copying thread flushes before a
    restart: SQLite's shared lock on it (its unix VFS: 510 bytes from 2^30 + 2) must stay,
    or another process closing its last connection would think itself alone and delete the
    WAL under this one."""
    ck = checkpointer(ledger)
    i = 0
    while ck.restarts < 1:  # past the limit: a flush, then a restart
        await ledger.begin(row(i))
        i += 1
        assert i < 5000, "the WAL never started over"
    await until(lambda: not ck._copying)
    assert await lock_seen_from_another_process(ledger.path, 2**30 + 2, 510) == "held"
