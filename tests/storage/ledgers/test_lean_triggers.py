"""The embedded ledger keeps its rollups with the fewest trigger programs a request can fire:
none on INSERT, and on the UPDATE that settles a row only what counts it (migration 010)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from quotaflow.storage.base import LedgerRow
from quotaflow.storage.ledgers.sqlite import SqliteLedger

T0 = 1_773_489_600.0


def row(i: int, status: str = "pending", attempt: int = 1) -> LedgerRow:
    return LedgerRow(
        request_id=f"req-{i}",
        attempt=attempt,
        ts=T0 + i,
        agent="bob",
        route="smart",
        provider="openai",
        key_id="openai-1",
        model="gpt-4o-mini",
        status=status,
        prompt_tokens=10 if status != "pending" else 0,
        total_tokens=30 if status != "pending" else 0,
        requests=1 if status != "pending" else 0,
    )


def triggers(path: Path) -> dict[str, str]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    finally:
        db.close()


def totals(path: Path) -> tuple[tuple[object, ...], tuple[object, ...], tuple[object, ...]]:
    """(rollup sums, ledger-row sums, outcome sums vs requests) of settled rows."""
    db = sqlite3.connect(path)
    try:
        rolled = db.execute(
            "SELECT SUM(attempts), SUM(requests), SUM(total_tokens) FROM ledger_slots"
        ).fetchone()
        rows = db.execute(
            "SELECT COUNT(*), SUM(requests), SUM(total_tokens) FROM ledger "
            "WHERE status != 'pending'"
        ).fetchone()
        outcomes = db.execute(
            "SELECT (SELECT SUM(answered + refused + failed) FROM ledger_outcomes), "
            "(SELECT COUNT(DISTINCT request_id) FROM ledger WHERE status != 'pending')"
        ).fetchone()
        return rolled, rows, outcomes
    finally:
        db.close()


async def append(path: Path, rows: list[LedgerRow]) -> None:
    ledger = SqliteLedger(path)
    await ledger.open()
    try:
        await ledger.append(rows)
    finally:
        await ledger.close()


async def test_an_insert_fires_no_trigger(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "quotaflow.db")
    await ledger.open()
    await ledger.close()
    on_insert = [n for n, sql in triggers(tmp_path / "quotaflow.db").items() if "INSERT ON" in sql]
    assert on_insert == []


async def test_rows_settled_from_the_start_are_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "quotaflow.db"
    ledger = SqliteLedger(path)
    await ledger.open()
    try:
        await ledger.append([row(0, "refused"), row(1, "ok"), row(2, "error")])
        await ledger.begin(row(3))
        await ledger.finish(row(3, "ok"))
        await ledger.begin(row(3, attempt=2))  # a second attempt of request 3, then settled
        await ledger.finish(row(3, "error", attempt=2))
        await ledger.begin(row(4))  # left in flight: in no rollup
    finally:
        await ledger.close()
    rolled, rows, outcomes = totals(path)
    assert rolled == rows == (5, 5, 150)
    assert outcomes == (4, 4)


async def test_a_ledger_made_before_loses_its_insert_triggers(tmp_path: Path) -> None:
    """A ledger from before 010 has INSERT triggers of its own: left in place, a row written as
    pending and settled would be counted by them and by the UPDATE trigger."""
    path = tmp_path / "quotaflow.db"
    ledger = SqliteLedger(path)
    await ledger.open()
    await ledger.close()
    db = sqlite3.connect(path)
    for name in (
        "ledger_rollup_insert",
        "ledger_outcome_insert_alone",
        "ledger_outcome_insert_joins",
    ):  # stand-ins that count a settled insert, as the old ones did
        db.execute(
            f"CREATE TRIGGER {name} AFTER INSERT ON ledger WHEN NEW.status != 'pending' BEGIN "
            "INSERT INTO ledger_outcomes VALUES (0, 1, 0, 0) ON CONFLICT (slot) DO UPDATE "
            "SET answered = answered + 1; END"
        )
    db.execute(
        "CREATE TRIGGER ledger_rollup_unsettle AFTER UPDATE ON ledger "
        "WHEN OLD.status != 'pending' BEGIN SELECT 1; END"
    )
    db.commit()
    db.close()
    await append(path, [row(0, "ok")])
    assert not {
        "ledger_rollup_insert",
        "ledger_outcome_insert_alone",
        "ledger_outcome_insert_joins",
        "ledger_rollup_unsettle",
    } & set(triggers(path))
    rolled, rows, outcomes = totals(path)
    assert rolled == rows == (1, 1, 30)
    assert outcomes == (1, 1)


async def test_a_settled_row_is_final(tmp_path: Path) -> None:
    """Nothing in quotaflow changes a settled row; an update from outside is refused rather
    than leaving the rollups counting what the row no longer says."""
    path = tmp_path / "quotaflow.db"
    await append(path, [row(0, "ok")])
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="settled ledger row is final"):
        db.execute("UPDATE ledger SET total_tokens = 99 WHERE request_id = 'req-0'")
    db.close()
    rolled, rows, _ = totals(path)
    assert rolled == rows == (1, 1, 30)
