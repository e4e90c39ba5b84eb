"""The PostgreSQL ledger writes a batch of rows in one statement, and loses none of them."""

from __future__ import annotations

import asyncio
from typing import Any

from quotaflow.storage.base import LedgerRow
from quotaflow.storage.ledgers.postgres import PostgresLedger

T0 = 1_773_489_600.0


def row(i: int, **kw: Any) -> LedgerRow:
    base: dict[str, Any] = {
        "request_id": f"req-{i}",
        "attempt": 1,
        "ts": T0 + i,
        "agent": "bob",
        "route": "smart",
        "provider": "openai",
        "key_id": "openai-1",
        "model": "gpt-4o-mini",
        "reserved_tokens": 900,
        "extra": {"reserved_cost": 0.01},
    }
    base.update(kw)
    return LedgerRow(**base)


def done(r: LedgerRow, tokens: int) -> LedgerRow:
    r.prompt_tokens, r.completion_tokens, r.total_tokens = tokens // 2, tokens - tokens // 2, tokens
    r.requests, r.cost_usd, r.status, r.latency_ms = 1, tokens / 1e6, "ok", 12.5
    r.detail = None if tokens % 2 else f"note {tokens}"
    return r


async def test_new_and_finished_rows_share_one_statement_and_all_land(pg_dsn: str) -> None:
    ledger = PostgresLedger(pg_dsn, replica_id="batches", pool_size=1)
    await ledger.open()
    statements: list[str] = []
    try:
        first = [row(i) for i in range(50)]
        await asyncio.gather(*(ledger.begin(r) for r in first))
        writer = await ledger._writer_connection()  # what the writer writes with
        writer.add_query_logger(lambda q: statements.append(q.query))
        # Finish the first 50 while 50 others begin: one batch holds both kinds.
        second = [row(i) for i in range(50, 100)]
        await asyncio.gather(
            *(ledger.finish(done(r, 100 + i)) for i, r in enumerate(first)),
            *(ledger.begin(r) for r in second),
        )
        writes = list(statements)
        rows = await ledger.fetch(
            "SELECT request_id, status, total_tokens, prompt_tokens, cost_usd, detail, "
            "reserved_tokens, reserved_cost FROM ledger ORDER BY ts"
        )
    finally:
        await ledger.close()
    assert len(rows) == 100
    for i, (rid, status, total, prompt, cost, detail, reserved, reserved_cost) in enumerate(rows):
        assert rid == f"req-{i}" and reserved == 900 and abs(reserved_cost - 0.01) < 1e-12
        if i < 50:
            tokens = 100 + i
            assert (status, total, prompt) == ("ok", tokens, tokens // 2)
            assert abs(cost - tokens / 1e6) < 1e-12
            assert detail == (None if tokens % 2 else f"note {tokens}")
        else:
            assert (status, total) == ("pending", 0)
    # One statement per batch (no BEGIN, no COMMIT, no reset of a pooled connection): the
    # hundred writes took a few round trips at most.
    assert 1 <= len(writes) <= 3, writes
    assert all(q.lstrip().startswith(("INSERT", "UPDATE", "WITH")) for q in writes), writes


async def test_a_batch_keeps_every_value_exactly(pg_dsn: str) -> None:
    """Whatever form a batch's values travel in, they land bit for bit: floats that need 17
    digits, tiny and subnormal ones, 64-bit integers, text with quotes, backslashes, braces,
    commas, newlines and non-ASCII letters, empty text and NULLs where a column allows them."""
    ledger = PostgresLedger(pg_dsn, replica_id="exact", pool_size=1)
    await ledger.open()
    odd = ['a "quoted", {braced} \\ back', "", "NULL", " padded ", "line\nbreak\ttab", "ünï €"]
    floats = [0.1 + 0.2, 1 / 3, 1e-300, 7.5e-7 * 3, 5e-324, 123456789.123456789]
    try:
        begun = []
        for i, text in enumerate(odd):
            r = row(i, model=text, agent=text or "x", reserved_tokens=2**62 + i)
            r.ts = T0 + i + 1 / 7
            r.extra = {"reserved_cost": floats[i]}
            r.detail = text
            begun.append(r)
        await asyncio.gather(*(ledger.begin(r) for r in begun))
        for i, r in enumerate(begun):
            done(r, 2**40 + i)
            r.cost_usd, r.latency_ms, r.ttfb_ms = floats[-1 - i], floats[i], None
            r.detail = odd[-1 - i] if i % 2 else None
            r.error_kind, r.http_status, r.estimated = odd[i], None, bool(i % 2)
        await asyncio.gather(*(ledger.finish(r) for r in begun))
        rows = await ledger.fetch(
            "SELECT model, agent, reserved_tokens, ts, reserved_cost, total_tokens, cost_usd, "
            "latency_ms, ttfb_ms, detail, error_kind, http_status, estimated FROM ledger "
            "ORDER BY id"
        )
    finally:
        await ledger.close()
    assert len(rows) == len(odd)
    for i, got in enumerate(rows):
        want = (
            odd[i], odd[i] or "x", 2**62 + i, T0 + i + 1 / 7, floats[i], 2**40 + i,
            floats[-1 - i], floats[i], None, odd[-1 - i] if i % 2 else None, odd[i], None,
            bool(i % 2),
        )  # fmt: skip
        assert got == want, (i, got, want)
