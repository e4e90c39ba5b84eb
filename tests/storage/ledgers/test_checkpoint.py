"""WAL checkpoints of the embedded ledger run on a thread of their own, never in a commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

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
