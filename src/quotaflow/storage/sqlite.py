"""The embedded ledger: SQLite in WAL mode with group commit.

Writes are queued and a single writer task commits everything queued so far in one
transaction; each caller's ``await`` returns only after the transaction holding its row
has committed. With ``synchronous=NORMAL`` a commit is a write to the WAL file, so a
``kill -9`` of the process loses nothing that was committed (power loss may lose the
last transactions; set ``synchronous: full`` in the config to rule that out too).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from quotaflow.storage.base import LedgerQuery, LedgerRow
from quotaflow.types import Measure

_COLUMNS = (
    "id, request_id, attempt, ts, agent, route, provider, key_id, model, prompt_tokens, "
    "completion_tokens, cached_tokens, total_tokens, requests, cost_usd, latency_ms, ttfb_ms, "
    "status, error_kind, http_status, estimated, stream, reserved_tokens, reserved_cost, source, detail"
)
_INSERT = f"INSERT INTO ledger ({_COLUMNS}) VALUES ({', '.join('?' * 26)})"
_FINISH = (
    "UPDATE ledger SET prompt_tokens=?, completion_tokens=?, cached_tokens=?, total_tokens=?, "
    "requests=?, cost_usd=?, latency_ms=?, ttfb_ms=?, status=?, error_kind=?, http_status=?, "
    "estimated=?, detail=? WHERE id=?"
)


def _insert_params(r: LedgerRow) -> tuple[Any, ...]:
    return (
        r.id, r.request_id, r.attempt, r.ts, r.agent, r.route, r.provider, r.key_id, r.model,
        r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.total_tokens, r.requests,
        r.cost_usd, r.latency_ms, r.ttfb_ms, r.status, r.error_kind, r.http_status,
        int(r.estimated), int(r.stream), r.reserved_tokens, float(r.extra.get("reserved_cost", 0.0)),
        r.source, r.detail,
    )  # fmt: skip


def _finish_params(r: LedgerRow) -> tuple[Any, ...]:
    return (
        r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.total_tokens, r.requests,
        r.cost_usd, r.latency_ms, r.ttfb_ms, r.status, r.error_kind, r.http_status,
        int(r.estimated), r.detail, r.id,
    )  # fmt: skip


def _row(t: Sequence[Any]) -> LedgerRow:
    return LedgerRow(
        id=t[0], request_id=t[1], attempt=t[2], ts=t[3], agent=t[4], route=t[5], provider=t[6],
        key_id=t[7], model=t[8], prompt_tokens=t[9], completion_tokens=t[10], cached_tokens=t[11],
        total_tokens=t[12], requests=t[13], cost_usd=t[14], latency_ms=t[15], ttfb_ms=t[16],
        status=t[17], error_kind=t[18], http_status=t[19], estimated=bool(t[20]),
        stream=bool(t[21]), reserved_tokens=t[22], extra={"reserved_cost": t[23]}, source=t[24],
        detail=t[25],
    )  # fmt: skip


def scope_condition(scope: str) -> tuple[str, tuple[Any, ...]]:
    """SQL condition selecting the ledger rows that count against a limit scope."""
    if scope == "global":
        return "1=1", ()
    kind, _, name = scope.partition(":")
    column = {"key": "key_id", "agent": "agent", "route": "route", "provider": "provider"}.get(kind)
    if column is None:
        raise ValueError(f"unknown limit scope {scope!r}")
    if kind == "agent":
        # An agent's budget and its provider order: "agent:bob" or "agent:bob@openai".
        agent, _, provider = name.partition("@")
        if provider:
            return "agent=? AND provider=?", (agent, provider)
    return f"{column}=?", (name,)


def _migrations() -> list[str]:
    folder = resources.files("quotaflow.storage") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(folder / n).read_text(encoding="utf-8") for n in names]


class SqliteLedger:
    """Ledger (and small state tables) in ``<data>/quotaflow.db``."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._sync = synchronous
        self._db: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._pending: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._next_id = 1
        self._closing = False

    # -- lifecycle -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync}")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        for script in _migrations():
            db.executescript(script)
        (max_id,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM ledger").fetchone()
        self._next_id = int(max_id) + 1
        self._db = db
        self._read = self._connect()
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="quotaflow-ledger-writer")

    async def close(self) -> None:
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._writer is not None:
            await self._writer
        for db in (self._db, self._read):
            if db is not None:
                db.close()
        self._db = self._read = None

    # -- group commit ----------------------------------------------------------------------
    async def _write_loop(self) -> None:
        assert self._wake is not None
        assert self._db is not None
        db = self._db
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # let requests woken in the same turn join this batch
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                self._commit(db, batch)
            elif self._closing:
                return

    def _commit(
        self, db: sqlite3.Connection, batch: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]]
    ) -> None:
        try:
            db.execute("BEGIN")
            for sql, params, _ in batch:
                db.execute(sql, params)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for *_, fut in batch:
            if not fut.done():
                fut.set_result(None)

    def _submit(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        if self._wake is None:
            raise RuntimeError("ledger is not open")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((sql, params, fut))
        self._wake.set()
        return fut

    # -- LedgerStore ---------------------------------------------------------------------
    async def begin(self, row: LedgerRow) -> int:
        row.id = self._next_id
        self._next_id += 1
        await self._submit(_INSERT, _insert_params(row))
        return row.id

    async def finish(self, row: LedgerRow) -> None:
        await self._submit(_FINISH, _finish_params(row))

    async def append(self, rows: Sequence[LedgerRow]) -> None:
        futs = []
        for r in rows:
            r.id = self._next_id
            self._next_id += 1
            futs.append(self._submit(_INSERT, _insert_params(r)))
        if futs:
            await asyncio.gather(*futs)

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._read is not None
        with self._read_lock:
            return self._read.execute(sql, params).fetchall()

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query off the event loop."""
        return await asyncio.to_thread(self._fetch, sql, params)

    async def query(self, q: LedgerQuery) -> list[LedgerRow]:
        where: list[str] = ["1=1"]
        params: list[Any] = []
        for col, val in (("agent", q.agent), ("provider", q.provider), ("key_id", q.key_id)):
            if val is not None:
                where.append(f"{col}=?")
                params.append(val)
        if q.since is not None:
            where.append("ts>=?")
            params.append(q.since)
        if q.until is not None:
            where.append("ts<?")
            params.append(q.until)
        order = "DESC" if q.newest_first else "ASC"
        sql = (
            f"SELECT {_COLUMNS} FROM ledger WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?"
        )
        rows = await self.fetch(sql, (*params, q.limit))
        return [_row(t) for t in rows]

    def _since(self, scope: str, since: float) -> float:
        rows = self._fetch("SELECT MAX(at) FROM resets WHERE scope=?", (scope,))
        last_reset = rows[0][0] if rows and rows[0][0] is not None else None
        return since if last_reset is None else max(since, float(last_reset))

    async def sum_scope(self, scope: str, since: float) -> Measure:
        cond, params = scope_condition(scope)
        start = self._since(scope, since)
        sql = (
            "SELECT COALESCE(SUM(total_tokens),0), COALESCE(SUM(requests),0), "
            f"COALESCE(SUM(cost_usd),0) FROM ledger WHERE {cond} AND ts>=? AND status!='pending'"
        )
        (t, r, c) = (await self.fetch(sql, (*params, start)))[0]
        return Measure(float(t), float(r), float(c))

    async def events_scope(self, scope: str, since: float) -> list[tuple[float, Measure]]:
        cond, params = scope_condition(scope)
        start = self._since(scope, since)
        sql = (
            f"SELECT ts, total_tokens, requests, cost_usd FROM ledger WHERE {cond} AND ts>=? "
            "AND status!='pending' AND (total_tokens>0 OR requests>0 OR cost_usd>0) ORDER BY ts"
        )
        rows = await self.fetch(sql, (*params, start))
        return [(float(ts), Measure(float(t), float(r), float(c))) for ts, t, r, c in rows]

    async def record_reset(self, scope: str, at: float) -> None:
        await self._submit("INSERT INTO resets (scope, at) VALUES (?, ?)", (scope, at))

    async def settle_crashed(self) -> int:
        rows = await self.fetch("SELECT COUNT(*) FROM ledger WHERE status='pending'")
        n = int(rows[0][0])
        if n:
            await self._submit(
                "UPDATE ledger SET status='crashed', estimated=1, requests=1, "
                "total_tokens=reserved_tokens, cost_usd=reserved_cost, "
                "detail='left pending by a crash; charged at its reserved worst case' "
                "WHERE status='pending'",
                (),
            )
        return n
