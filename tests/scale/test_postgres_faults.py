"""PostgreSQL unreachable or restarted: writes fail closed (503), then recover by themselves."""

from __future__ import annotations

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
