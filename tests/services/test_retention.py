"""settings.ledger_retention_days: the server's own compaction (Runtime.compact_once), with
the totals a report reads unchanged."""

from __future__ import annotations

from pathlib import Path

from quotaflow.runtime import open_runtime, resolve_config
from quotaflow.storage.base import LedgerQuery, LedgerRow
from quotaflow.testing import FrozenClock

DAY = 86400.0
NOW = 1_773_489_600.0 + 12 * 3600  # midday, UTC


def config(retention: float | None) -> dict:
    settings = {} if retention is None else {"ledger_retention_days": retention}
    return {
        "settings": settings,
        "providers": [{"name": "groq", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1",
                       "models": ["m1"], "keys": [{"id": "groq-1", "secret": "gsk-one-aaaa"}]}],
    }  # fmt: skip


def rows() -> list[LedgerRow]:
    return [
        LedgerRow(
            request_id=f"r{d}-{h}",
            attempt=1,
            ts=NOW - d * DAY - h * 3600,
            agent="bob",
            provider="groq",
            key_id="groq-1",
            model="m1",
            status="ok",
            requests=1,
            total_tokens=100 + d,
            prompt_tokens=40,
            completion_tokens=60 + d,
            cost_usd=0.001 * d,
        )
        for d in range(12)
        for h in range(0, 24, 5)
    ]


async def test_the_server_compacts_past_the_retention_and_keeps_totals(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    async with open_runtime(resolve_config(config(None)), tmp_path, clock=clock) as runtime:
        assert await runtime.compact_once() == 0  # no retention: nothing is deleted
        ledger = runtime.gateway.ledger
        await ledger.append(rows())
        before = {g: await ledger.usage_totals(g) for g in ("total", "key", "slot")}
        counts = await ledger.request_counts()
    async with open_runtime(resolve_config(config(5)), tmp_path, clock=clock) as runtime:
        ledger = runtime.gateway.ledger
        deleted = await runtime.compact_once()
        assert deleted > 0
        left = await ledger.query(LedgerQuery(limit=1000))
        assert len(left) == len(rows()) - deleted
        assert min(r.ts for r in left) >= (NOW - 5 * DAY) // DAY * DAY
        for g, totals in before.items():
            got = await ledger.usage_totals(g)
            assert [(u.group, u.requests, u.total_tokens, u.attempts) for u in got] == [
                (u.group, u.requests, u.total_tokens, u.attempts) for u in totals
            ]
        assert await ledger.request_counts() == counts
        assert await runtime.compact_once() == 0
