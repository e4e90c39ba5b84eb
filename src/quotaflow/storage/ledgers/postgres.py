"""The ledger of scaled-out replicas (and their keys, agents, settings, alerts): PostgreSQL.

It implements the same methods as :class:`~quotaflow.storage.ledgers.sqlite.SqliteLedger`, with the
same group commit: writes are queued and one writer task commits everything queued so far
in one transaction; each caller's ``await`` returns only after that COMMIT, so a response
is released only once its row is durable. A batch of ledger rows alone is one statement
(its rows as one JSON parameter, ``jsonb_array_elements``-ed): one round trip instead of
BEGIN, two statements and COMMIT.

Several replicas share the database. Each row records the ``replica`` that journaled it;
:meth:`settle_crashed` settles only this replica's pending rows, or anyone's older than
``stale_after_s`` (their replica died and never came back). Schema migrations
(``migrations/postgres/NNN_*.sql``) run at :meth:`open` under a PostgreSQL advisory lock, so two
replicas starting at once apply each exactly once.

Faults: when PostgreSQL is unreachable every write and read raises
:class:`~quotaflow.errors.Unavailable` (503); the connection pool reconnects by itself when
the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import asyncpg
import orjson

from quotaflow.clock import Clock, SystemClock
from quotaflow.storage.base import (
    SLOT_S,
    LedgerRow,
    LedgerUnavailable,
)
from quotaflow.storage.ledgers.sql import (
    COLUMNS,
    COMPACT_CHUNK_S,
    FOLD_TABLE,
    SqlLedger,
    compaction_steps,
    scope_condition,
)
from quotaflow.storage.outage import Outage, where
from quotaflow.storage.outbox import SqlOutbox
from quotaflow.types import Measure

log = logging.getLogger("quotaflow.storage.ledgers.postgres")


def _not_the_pool_floor(record: logging.LogRecord) -> bool:
    """asyncpg's pool logs a traceback each time it fails to reconnect during an outage;
    the ledger's own line (:class:`Outage`) says it once, with what to do."""
    return not str(record.msg).startswith("Failed to restore the pool connection floor")


logging.getLogger("asyncpg.pool").addFilter(_not_the_pool_floor)

MIGRATION_LOCK = 0x71666C6F77  # "qflow": the advisory lock migrations run under
COMPACT_LOCK = MIGRATION_LOCK + 1  # one replica compacts at a time (the others skip)
ID_BLOCK = 64  # ids a replica takes at once (the sequence increments by this much)
_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.ConnectionFailureError,
)

_INSERT = (
    f"INSERT INTO ledger ({COLUMNS}, replica) VALUES ({', '.join(f'${i}' for i in range(1, 29))})"
)
_FINISH = (
    "UPDATE ledger SET prompt_tokens=$1, completion_tokens=$2, cached_tokens=$3, "
    "total_tokens=$4, requests=$5, cost_usd=$6, latency_ms=$7, ttfb_ms=$8, status=$9, "
    "error_kind=$10, http_status=$11, estimated=$12, detail=$13 WHERE id=$14"
)

# A batch's rows in one statement (one round trip, its own transaction). The rows travel as
# one JSON text, an array of rows each an array of values (orjson writes it in C, floats in
# their shortest exact form, integers whole, text escaped), which ``jsonb_array_elements``
# turns back into rows and each ``->>`` field is cast to its column's type: exact for every
# value (a float's shortest repr parses back to the same double). Columns as array
# parameters cost asyncpg a Python-level type check per value (~60 per request). The
# types are the columns' (migrations/postgres), in the order of _INSERT's and _FINISH's
# parameters.
_INSERT_TYPES = (
    "bigint", "text", "integer", "double precision", "text", "text", "text", "text", "text",
    "bigint", "bigint", "bigint", "bigint", "integer", "double precision", "double precision",
    "double precision", "text", "text", "integer", "boolean", "boolean", "bigint",
    "double precision", "text", "text", "text", "text",
)  # fmt: skip
_FINISH_COLUMNS = (
    ("prompt_tokens", "bigint"), ("completion_tokens", "bigint"), ("cached_tokens", "bigint"),
    ("total_tokens", "bigint"), ("requests", "integer"), ("cost_usd", "double precision"),
    ("latency_ms", "double precision"), ("ttfb_ms", "double precision"), ("status", "text"),
    ("error_kind", "text"), ("http_status", "integer"), ("estimated", "boolean"),
    ("detail", "text"), ("id", "bigint"),
)  # fmt: skip


def _rows(types: Sequence[str], param: int, names: Sequence[str] = ()) -> str:
    """The rows of JSON parameter ``$param`` (an array of arrays), fields cast to ``types``."""
    fields = [f"r->>{i}" if t == "text" else f"(r->>{i})::{t}" for i, t in enumerate(types)]
    if names:
        fields = [f"{f} AS {n}" for f, n in zip(fields, names, strict=True)]
    return f"SELECT {', '.join(fields)} FROM jsonb_array_elements(${param}::jsonb) AS r"


_ROWS_INSERT = f"INSERT INTO ledger ({COLUMNS}, replica) {_rows(_INSERT_TYPES, 1)}"


def _rows_finish(param: int) -> str:
    names = [c for c, _ in _FINISH_COLUMNS]
    sets = ", ".join(f"{c}=u.{c}" for c in names if c != "id")
    rows = _rows([t for _, t in _FINISH_COLUMNS], param, names)
    return f"UPDATE ledger SET {sets} FROM ({rows}) AS u WHERE ledger.id=u.id"


_ROWS_FINISH = _rows_finish(1)
_ROWS_BOTH = f"WITH inserted AS ({_ROWS_INSERT}) {_rows_finish(2)}"


def _json(rows: list[tuple[Any, ...]]) -> str:
    # NaN and infinities become null (a NOT NULL column then refuses the batch), as SQLite
    # stores them as NULL: no ledger value is one.
    return orjson.dumps(rows).decode()


async def write_rows(
    conn: asyncpg.Connection, inserts: list[tuple[Any, ...]], finishes: list[tuple[Any, ...]]
) -> None:
    """A batch's new rows and finished rows in one statement (finishes are of rows committed
    by an earlier batch, so the two parts never touch the same row)."""
    if inserts and finishes:
        await conn.execute(_ROWS_BOTH, _json(inserts), _json(finishes))
    elif inserts:
        await conn.execute(_ROWS_INSERT, _json(inserts))
    elif finishes:
        await conn.execute(_ROWS_FINISH, _json(finishes))


def _apart(batch: list[_Op]) -> bool:
    """Whether no request has both a settled row inserted and a row finished in ``batch``."""
    finished = {p[-1] for sql, p, _ in batch if sql is _FINISH}
    return not any(
        sql is _INSERT and p[1] in finished and p[17] != "pending" for sql, p, _ in batch
    )


def pg(sql: str) -> str:
    """SQLite-style ``?`` placeholders → PostgreSQL's ``$1, $2, …``."""
    n = 0

    def number(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return re.sub(r"\?", number, sql)


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("quotaflow.storage.ledgers") / "migrations" / "postgres"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(n, (folder / n).read_text(encoding="utf-8")) for n in names]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not applied yet, under an advisory lock; returns their names."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for name, sql in _migrations():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


_Op = tuple[str, tuple[Any, ...], "asyncio.Future[None]"]


_BUMP = (
    "INSERT INTO settings (name, value) VALUES ($1, '1') ON CONFLICT (name) "
    "DO UPDATE SET value = (COALESCE(settings.value, '0')::bigint + 1)::text"
)


class PostgresLedger(SqlOutbox, SqlLedger):
    """:class:`~quotaflow.storage.base.LedgerStore` (and ManagementStore, StatsStore) in
    PostgreSQL, shared by every replica. ``replica_id`` must be stable across restarts of
    the same replica (it settles its own crashed rows at start)."""

    shared = True  # every replica reads and writes the same management state
    SLOT_SQL = f"FLOOR(ts / {SLOT_S:g}) * {SLOT_S:g}"
    BUMP_SQL = _BUMP

    def __init__(
        self,
        dsn: str,
        *,
        replica_id: str,
        clock: Clock | None = None,
        stale_after_s: float = 900.0,
        pool_size: int = 8,
        timeout_s: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.replica_id = replica_id
        self._clock = clock or SystemClock()
        self.stale_after_s = stale_after_s
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self._conn: asyncpg.Connection | None = None  # the writer's, between batches
        self._pending: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # Told each group commit's duration (the metrics' ledger commit histogram).
        self.on_commit: Callable[[float], None] | None = None
        self._ids: list[int] = []
        self._id_lock = asyncio.Lock()
        self.applied_migrations: list[str] = []
        self.outage = Outage(
            f"the ledger (PostgreSQL at {where(dsn)})",
            "check that PostgreSQL runs and this host reaches it: requests fail closed with "
            "503 until it is back",
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self._pool_size + 1,  # + the writer's own
                timeout=self._timeout_s,
                command_timeout=self._timeout_s,
            )
            async with self._pool.acquire() as conn:
                self.applied_migrations = await migrate(conn)
        except _DOWN as exc:
            raise LedgerUnavailable(f"PostgreSQL is unreachable: {exc}") from None
        self._wake = asyncio.Event()
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name="quotaflow-pg-writer")

    async def close(self) -> None:
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(*_DOWN):
                await self.pool.release(conn)
        if self._pool is not None:
            try:  # a graceful close waits for connections; a cut one must not hang shutdown
                await asyncio.wait_for(self._pool.close(), self._timeout_s * 2)
            except _DOWN:  # asyncio.TimeoutError (in _DOWN) is TimeoutError
                self._pool.terminate()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("ledger is not open")
        return self._pool

    # -- group commit ----------------------------------------------------------------------
    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # let requests woken in the same turn join this batch
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                t0 = time.perf_counter()
                await self._commit(batch)
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - t0)
            if self._closing and not self._pending:
                return

    async def _commit(self, batch: list[_Op]) -> None:
        # Inserts and finishes commute within a batch (a finish is submitted only after its
        # insert committed); other statements run first, in the order they came.
        inserts = [p for sql, p, _ in batch if sql is _INSERT]
        finishes = [p[:-1] for sql, p, _ in batch if sql is _FINISH]  # less the request id
        error: BaseException | None = None

        others = [(sql, p) for sql, p, _ in batch if sql is not _INSERT and sql is not _FINISH]
        # A request with an attempt settled by each part of one statement would be counted
        # wrongly by the request-outcome triggers (each part's sees the other's row as older):
        # then the parts go as two statements (rare: a refusal appended as an attempt ends).
        split = bool(inserts and finishes) and not _apart(batch)

        async def write() -> None:
            conn = await self._writer_connection()
            if not others and not split:  # the usual batch: one statement, one round trip
                await write_rows(conn, inserts, finishes)
                return
            async with conn.transaction():
                for sql, params in others:
                    await conn.execute(sql, *params)
                if split:
                    await write_rows(conn, inserts, [])
                    await write_rows(conn, [], finishes)
                else:
                    await write_rows(conn, inserts, finishes)

        try:
            # Bounded: a connection cut mid-way (a restart) must end in an error, never a hang
            # (a timeout on this task, not wait_for's task around the write).
            async with asyncio.timeout(self._timeout_s * 2):
                await write()
        except _DOWN as exc:
            await self._drop_writer_connection()  # the next batch takes a fresh one
            self.outage.failed(f"{type(exc).__name__}: {exc}; {len(batch)} row(s) not committed")
            error = LedgerUnavailable(
                "The ledger (PostgreSQL) is unreachable; requests fail closed until it is back.",
                headers={"retry-after": "1"},
            )
        except asyncpg.PostgresError as exc:
            error = exc
        except Exception as exc:  # anything else must still answer every waiting request
            log.exception("ledger batch of %d failed", len(batch))
            await self._drop_writer_connection()
            error = LedgerUnavailable(f"The ledger (PostgreSQL) failed: {type(exc).__name__}")
        if error is None:
            self.outage.answered()
        for *_, fut in batch:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    async def _writer_connection(self) -> asyncpg.Connection:
        """The writer's own connection, held between batches: handing it back to the pool
        after each batch would cost a round trip more (the pool resets what it gets back)."""
        if self._conn is not None and self._conn.is_closed():
            await self._drop_writer_connection()
        if self._conn is None:
            self._conn = await self.pool.acquire()
        return self._conn

    async def _drop_writer_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Either may refuse (the pool may have taken a lost connection back already):
            # whatever its state, it is not used again.
            with contextlib.suppress(Exception):
                conn.terminate()
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    def _dialect_sql(self, sql: str) -> str:
        return pg(sql)

    @property
    def queue_depth(self) -> int:
        """Writes waiting for the next group commit."""
        return len(self._pending)

    def _submit(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        if self._wake is None or self._closing:
            raise RuntimeError("ledger is not open")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((sql, params, fut))
        self._wake.set()
        return fut

    def _write(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        return self._submit(pg(sql), params)

    def _upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        update = ", ".join(f"{c}=EXCLUDED.{c}" for c in columns if c not in key)
        marks = ", ".join("?" for _ in columns)
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {update}"
        )

    def _insert_new(self, table: str, columns: Sequence[str], key: str) -> str:
        marks = ", ".join("?" for _ in columns)
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING"

    async def _next_id(self) -> int:
        if not self._ids:
            async with self._id_lock:
                if not self._ids:
                    start = await self._val("SELECT nextval('ledger_ids')")
                    self._ids = list(range(int(start) + ID_BLOCK - 1, int(start) - 1, -1))
        return self._ids.pop()

    # -- reads -----------------------------------------------------------------------------
    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (``?`` placeholders)."""
        try:
            rows = await asyncio.wait_for(self.pool.fetch(pg(sql), *params), self._timeout_s * 2)
        except _DOWN as exc:
            raise LedgerUnavailable(f"PostgreSQL is unreachable: {exc}") from None
        return [tuple(r) for r in rows]

    async def outbox_claim(self, row_id: int, seen_next_at: float, until: float) -> bool:
        """Replicas share the outbox: one of them, the first to move the row, delivers it."""
        rows = await self.fetch(
            "UPDATE notify_outbox SET next_at=? WHERE id=? AND next_at=? AND done_at IS NULL "
            "RETURNING id",
            (until, row_id, seen_next_at),
        )
        return bool(rows)

    async def _val(self, sql: str, *params: Any) -> Any:
        rows = await self.fetch(sql, params)
        return rows[0][0] if rows else None

    # -- LedgerStore -----------------------------------------------------------------------
    def _insert_params(self, r: LedgerRow) -> tuple[Any, ...]:
        return (
            r.id,
            r.request_id,
            r.attempt,
            r.ts,
            r.agent,
            r.route,
            r.provider,
            r.key_id,
            r.model,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            r.total_tokens,
            r.requests,
            r.cost_usd,
            r.latency_ms,
            r.ttfb_ms,
            r.status,
            r.error_kind,
            r.http_status,
            r.estimated,
            r.stream,
            r.reserved_tokens,
            float(r.extra.get("reserved_cost", 0.0)),
            r.source,
            r.detail,
            r.door,
            self.replica_id,
        )

    async def begin(self, row: LedgerRow) -> int:
        row.id = await self._next_id()
        await self._submit(_INSERT, self._insert_params(row))
        return row.id

    async def finish(self, row: LedgerRow) -> None:
        await self._submit(
            _FINISH,
            (
                row.prompt_tokens,
                row.completion_tokens,
                row.cached_tokens,
                row.total_tokens,
                row.requests,
                row.cost_usd,
                row.latency_ms,
                row.ttfb_ms,
                row.status,
                row.error_kind,
                row.http_status,
                row.estimated,
                row.detail,
                row.id,
                row.request_id,  # not written: tells _commit which requests settle
            ),
        )

    async def append(self, rows: Sequence[LedgerRow]) -> None:
        futs = []
        for r in rows:
            r.id = await self._next_id()
            futs.append(self._submit(_INSERT, self._insert_params(r)))
        if futs:
            await asyncio.gather(*futs)

    async def _compact(self, cutoff: float) -> int:
        """Compaction on a pooled connection, one chunk per transaction (row locks only:
        replicas keep writing meanwhile)."""
        try:
            async with self.pool.acquire() as conn:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", COMPACT_LOCK):
                    return 0  # another replica is compacting: its outcomes must not count twice
                try:
                    deleted = await self._compact_on(conn, cutoff)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", COMPACT_LOCK)
        except _DOWN as exc:
            raise LedgerUnavailable(f"PostgreSQL is unreachable: {exc}") from None
        return deleted

    async def _compact_on(self, conn: asyncpg.Connection, cutoff: float) -> int:
        deleted = 0
        await conn.execute(FOLD_TABLE)
        lo = await conn.fetchval("SELECT MIN(ts) FROM ledger WHERE ts<$1", cutoff)
        while lo is not None and lo < cutoff:
            lo = float(lo) // COMPACT_CHUNK_S * COMPACT_CHUNK_S
            hi = min(lo + COMPACT_CHUNK_S, cutoff)
            steps = compaction_steps(lo, hi)
            async with conn.transaction():
                for i, (sql, params) in enumerate(steps):
                    status = await conn.execute(pg(sql), *params)
                    if i >= len(steps) - 2:
                        deleted += int(str(status).rsplit(" ", 1)[-1])
            lo = await conn.fetchval(
                "SELECT MIN(ts) FROM ledger WHERE ts>=$1 AND ts<$2", hi, cutoff
            )
        return deleted

    def keep_recent(self) -> None:
        """Several replicas write this ledger: the last hour is read from SQL, always."""

    async def recent_seeded(self) -> bool:
        """No view of the last hour is kept here (see :meth:`keep_recent`)."""
        return False

    async def pending_scope(self, scope: str, since: float) -> list[tuple[float, Measure]]:
        """Attempts of a scope still in flight (any replica), at their reserved worst case."""
        cond, params = scope_condition(scope)
        start = await self._since(scope, since)
        sql = (
            f"SELECT ts, reserved_tokens, reserved_cost FROM ledger WHERE {cond} AND ts>=? "
            "AND status='pending' ORDER BY ts"
        )
        rows = await self.fetch(sql, (*params, start))
        return [(float(ts), Measure(float(t), 1.0, float(c))) for ts, t, c in rows]

    async def settle_crashed(self) -> int:
        """Settle, at their reserved worst case, the pending rows of this replica (it crashed
        with them in flight) and those of any replica older than ``stale_after_s``."""
        try:
            status = await self.pool.execute(
                "UPDATE ledger SET status='crashed', estimated=TRUE, requests=1, "
                "total_tokens=reserved_tokens, cost_usd=reserved_cost, "
                "detail='left pending by a crash; charged at its reserved worst case' "
                "WHERE status='pending' AND (replica=$1 OR ts<$2)",
                self.replica_id,
                self._clock.now() - self.stale_after_s,
            )
        except _DOWN as exc:
            raise LedgerUnavailable(f"PostgreSQL is unreachable: {exc}") from None
        return int(str(status).rsplit(" ", 1)[-1])
