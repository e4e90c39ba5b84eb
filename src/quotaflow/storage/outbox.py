"""The alert webhooks' durable outbox, kept by the ledger store (SQLite or PostgreSQL).

An event is written here before any delivery is tried and marked done only after its
destination answered 2xx (or it was given up), so deliveries survive a restart; the
``(target, event_id)`` pair is unique, so enqueueing an event twice stores it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class OutboxRow:
    target: str  # a hash of the destination's URL
    event_id: str
    body: str  # the event as JSON
    created_at: float
    next_at: float
    attempts: int = 0
    id: int | None = None


@runtime_checkable
class OutboxStore(Protocol):
    async def outbox_add(self, rows: Sequence[OutboxRow]) -> None: ...
    async def outbox_due(self, now: float, limit: int = 50) -> list[OutboxRow]: ...
    async def outbox_claim(self, row_id: int, seen_next_at: float, until: float) -> bool: ...
    async def outbox_done(self, row_id: int, at: float, error: str | None = None) -> None: ...
    async def outbox_retry(self, row_id: int, next_at: float, error: str) -> None: ...


class SqlOutbox:
    """The four outbox statements over a ledger's ``fetch`` (``?`` placeholders) and its
    group-committed ``_submit``; ``_dialect_sql`` turns ``?`` into the store's placeholders."""

    def _dialect_sql(self, sql: str) -> str:
        return sql

    def _submit(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        raise NotImplementedError

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def outbox_add(self, rows: Sequence[OutboxRow]) -> None:
        sql = self._dialect_sql(
            "INSERT INTO notify_outbox (target, event_id, body, created_at, next_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT (target, event_id) DO NOTHING"
        )
        await asyncio.gather(
            *(
                self._submit(sql, (r.target, r.event_id, r.body, r.created_at, r.next_at))
                for r in rows
            )
        )

    async def outbox_due(self, now: float, limit: int = 50) -> list[OutboxRow]:
        rows = await self.fetch(
            "SELECT target, event_id, body, created_at, next_at, attempts, id FROM notify_outbox "
            "WHERE done_at IS NULL AND next_at <= ? ORDER BY next_at, id LIMIT ?",
            (now, limit),
        )
        return [
            OutboxRow(str(t), str(e), str(b), float(c), float(n), int(a), int(i))
            for t, e, b, c, n, a, i in rows
        ]

    async def outbox_claim(self, row_id: int, seen_next_at: float, until: float) -> bool:
        """Take a due delivery until ``until`` unless someone took it since it was read.
        A store of one server (SQLite) has one delivery task: nothing to take it from."""
        return True

    async def outbox_done(self, row_id: int, at: float, error: str | None = None) -> None:
        await self._submit(
            self._dialect_sql(
                "UPDATE notify_outbox SET done_at=?, attempts=attempts+1, last_error=? WHERE id=?"
            ),
            (at, error, row_id),
        )

    async def outbox_retry(self, row_id: int, next_at: float, error: str) -> None:
        await self._submit(
            self._dialect_sql(
                "UPDATE notify_outbox SET next_at=?, attempts=attempts+1, last_error=? WHERE id=?"
            ),
            (next_at, error[:500], row_id),
        )
