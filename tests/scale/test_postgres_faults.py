"""PostgreSQL unreachable or restarted: writes fail closed (503), then recover by themselves."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from quotaflow.errors import Unavailable
from quotaflow.storage.base import LedgerQuery, LedgerRow
from quotaflow.storage.ledgers.postgres import PostgresLedger
from tests.scale.services import PG_ADMIN_DSN, free_port

pytestmark = pytest.mark.scale


def row(i: int) -> LedgerRow:
    return LedgerRow(request_id=f"req-{i}", attempt=1, ts=1_773_489_600.0 + i, key_id="a")


async def test_an_unreachable_database_is_a_503_not_a_crash() -> None:
    db = PostgresLedger(
        f"postgresql://postgres@127.0.0.1:{free_port()}/x", replica_id="r", timeout_s=1
    )
    with pytest.raises(Unavailable) as err:
        await db.open()
    assert err.value.status == 503


async def test_writes_fail_closed_while_connections_are_cut_then_recover(pg_dsn) -> None:
    db = PostgresLedger(pg_dsn, replica_id="r", pool_size=2, timeout_s=2)
    await db.open()
    try:
        await db.begin(row(1))
        # What a PostgreSQL restart does to the replica's connections.
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        name = pg_dsn.rsplit("/", 1)[1]
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=$1", name
        )
        await admin.close()
        outcomes = []
        for i in range(2, 6):
            try:
                await db.begin(row(i))
                outcomes.append("ok")
            except Unavailable as exc:
                outcomes.append(str(exc.status))
        assert set(outcomes) <= {"ok", "503"}
        assert outcomes[-1] == "ok"  # the pool reconnected by itself
        ids = {r.request_id for r in await db.query(LedgerQuery())}
        assert {"req-1"} | {
            f"req-{i}" for i, o in zip(range(2, 6), outcomes, strict=True) if o == "ok"
        } == ids
    finally:
        await db.close()


async def test_a_batch_that_cannot_commit_in_time_fails_closed_and_the_writer_goes_on(
    pg_dsn: str,
) -> None:
    """A batch stuck behind a lock (or a server that stops answering) is bounded: its
    requests get a 503, and the next batch lands once the way is free."""
    db = PostgresLedger(pg_dsn, replica_id="r", pool_size=2, timeout_s=0.3)
    await db.open()
    blocker = await asyncpg.connect(pg_dsn)
    try:
        await db.begin(row(1))
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(Unavailable) as err:
            await asyncio.wait_for(db.begin(row(2)), 30)  # (never a hang)
        assert err.value.status == 503
        await tx.rollback()
        await db.begin(row(3))
        rows = await db.fetch("SELECT request_id FROM ledger ORDER BY id")
    finally:
        await blocker.close()
        await db.close()
    # req-2 may land all the same: the server runs what it was sent once the lock goes,
    # unless the cancel asyncpg sends on the timeout arrives first. Its caller had a 503;
    # the row is pending, so it is charged at its worst case (over, never under).
    assert {"req-1", "req-3"} <= {r for (r,) in rows} <= {"req-1", "req-2", "req-3"}
