"""The ledger of scaled-out replicas (and their keys, agents, settings, alerts): PostgreSQL.

It implements the same methods as :class:`~quotaflow.storage.ledgers.sqlite.SqliteLedger`, with the
same group commit: writes are queued and one writer task commits everything queued so far
in one transaction; each caller's ``await`` returns only after that COMMIT, so a response
is released only once its row is durable.

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
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import asyncpg

from quotaflow.clock import Clock, SystemClock
from quotaflow.engine.stats import ModelStats
from quotaflow.storage.base import (
    SLOT_S,
    USAGE_GROUPS,
    LedgerQuery,
    LedgerRow,
    LedgerUnavailable,
    UsageTotals,
)
from quotaflow.storage.ledgers.sql import group_text, scope_condition, span
from quotaflow.storage.management import MGMT_VERSION, AlertRow, ManagedKeyRow
from quotaflow.storage.outbox import SqlOutbox
from quotaflow.types import Measure

log = logging.getLogger("quotaflow.storage.ledgers.postgres")

MIGRATION_LOCK = 0x71666C6F77  # "qflow": the advisory lock migrations run under
ID_BLOCK = 64  # ids a replica takes at once (the sequence increments by this much)
_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.ConnectionFailureError,
)

_COLUMNS = (
    "id, request_id, attempt, ts, agent, route, provider, key_id, model, prompt_tokens, "
    "completion_tokens, cached_tokens, total_tokens, requests, cost_usd, latency_ms, ttfb_ms, "
    "status, error_kind, http_status, estimated, stream, reserved_tokens, reserved_cost, source, "
    "detail"
)
_INSERT = (
    f"INSERT INTO ledger ({_COLUMNS}, replica) VALUES ({', '.join(f'${i}' for i in range(1, 28))})"
)
_FINISH = (
    "UPDATE ledger SET prompt_tokens=$1, completion_tokens=$2, cached_tokens=$3, "
    "total_tokens=$4, requests=$5, cost_usd=$6, latency_ms=$7, ttfb_ms=$8, status=$9, "
    "error_kind=$10, http_status=$11, estimated=$12, detail=$13 WHERE id=$14"
)


def pg(sql: str) -> str:
    """SQLite-style ``?`` placeholders → PostgreSQL's ``$1, $2, …``."""
    n = 0

    def number(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return re.sub(r"\?", number, sql)


def _row(t: Sequence[Any]) -> LedgerRow:
    return LedgerRow(
        id=t[0], request_id=t[1], attempt=t[2], ts=t[3], agent=t[4], route=t[5], provider=t[6],
        key_id=t[7], model=t[8], prompt_tokens=t[9], completion_tokens=t[10], cached_tokens=t[11],
        total_tokens=t[12], requests=t[13], cost_usd=t[14], latency_ms=t[15], ttfb_ms=t[16],
        status=t[17], error_kind=t[18], http_status=t[19], estimated=bool(t[20]),
        stream=bool(t[21]), reserved_tokens=t[22], extra={"reserved_cost": t[23]}, source=t[24],
        detail=t[25],
    )  # fmt: skip


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


class PostgresLedger(SqlOutbox):
    """:class:`~quotaflow.storage.base.LedgerStore` (and ManagementStore, StatsStore) in
    PostgreSQL, shared by every replica. ``replica_id`` must be stable across restarts of
    the same replica (it settles its own crashed rows at start)."""

    shared = True  # every replica reads and writes the same management state

    def __init__(
        self, dsn: str, *, replica_id: str, clock: Clock | None = None,
        stale_after_s: float = 900.0, pool_size: int = 8, timeout_s: float = 5.0,
    ) -> None:  # fmt: skip
        self.dsn = dsn
        self.replica_id = replica_id
        self._clock = clock or SystemClock()
        self.stale_after_s = stale_after_s
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self._pending: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # Told each group commit's duration (the metrics' ledger commit histogram).
        self.on_commit: Callable[[float], None] | None = None
        self._ids: list[int] = []
        self._id_lock = asyncio.Lock()
        self.applied_migrations: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self._pool_size, timeout=self._timeout_s,
                command_timeout=self._timeout_s,
            )  # fmt: skip
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
        finishes = [p for sql, p, _ in batch if sql is _FINISH]
        error: BaseException | None = None

        async def write() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                for sql, params, _ in batch:
                    if sql is not _INSERT and sql is not _FINISH:
                        await conn.execute(sql, *params)
                if inserts:
                    await conn.executemany(_INSERT, inserts)
                if finishes:
                    await conn.executemany(_FINISH, finishes)

        try:
            # Bounded: a connection cut mid-way (a restart) must end in an error, never a hang.
            await asyncio.wait_for(write(), self._timeout_s * 2)
        except _DOWN as exc:
            log.warning("ledger batch of %d not committed: %s", len(batch), exc)
            error = LedgerUnavailable(
                "The ledger (PostgreSQL) is unreachable; requests fail closed until it is back.",
                headers={"retry-after": "1"},
            )
        except asyncpg.PostgresError as exc:
            error = exc
        except Exception as exc:  # anything else must still answer every waiting request
            log.exception("ledger batch of %d failed", len(batch))
            error = LedgerUnavailable(f"The ledger (PostgreSQL) failed: {type(exc).__name__}")
        for *_, fut in batch:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

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

    async def _val(self, sql: str, *params: Any) -> Any:
        rows = await self.fetch(sql, params)
        return rows[0][0] if rows else None

    # -- LedgerStore -----------------------------------------------------------------------
    def _insert_params(self, r: LedgerRow) -> tuple[Any, ...]:
        return (
            r.id, r.request_id, r.attempt, r.ts, r.agent, r.route, r.provider, r.key_id,
            r.model, r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.total_tokens,
            r.requests, r.cost_usd, r.latency_ms, r.ttfb_ms, r.status, r.error_kind,
            r.http_status, r.estimated, r.stream, r.reserved_tokens,
            float(r.extra.get("reserved_cost", 0.0)), r.source, r.detail, self.replica_id,
        )  # fmt: skip

    async def begin(self, row: LedgerRow) -> int:
        row.id = await self._next_id()
        await self._submit(_INSERT, self._insert_params(row))
        return row.id

    async def finish(self, row: LedgerRow) -> None:
        await self._submit(
            _FINISH,
            (
                row.prompt_tokens, row.completion_tokens, row.cached_tokens, row.total_tokens,
                row.requests, row.cost_usd, row.latency_ms, row.ttfb_ms, row.status,
                row.error_kind, row.http_status, row.estimated, row.detail, row.id,
            ),
        )  # fmt: skip

    async def append(self, rows: Sequence[LedgerRow]) -> None:
        futs = []
        for r in rows:
            r.id = await self._next_id()
            futs.append(self._submit(_INSERT, self._insert_params(r)))
        if futs:
            await asyncio.gather(*futs)

    async def query(self, q: LedgerQuery) -> list[LedgerRow]:
        where: list[str] = ["TRUE"]
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
        return [_row(t) for t in await self.fetch(sql, (*params, q.limit))]

    async def _since(self, scope: str, since: float) -> float:
        last = await self._val("SELECT MAX(at) FROM resets WHERE scope=?", scope)
        return since if last is None else max(since, float(last))

    async def sum_scope(self, scope: str, since: float) -> Measure:
        cond, params = scope_condition(scope)
        start = await self._since(scope, since)
        sql = (
            "SELECT COALESCE(SUM(total_tokens),0), COALESCE(SUM(requests),0), "
            f"COALESCE(SUM(cost_usd),0) FROM ledger WHERE {cond} AND ts>=? AND status!='pending'"
        )
        (t, r, c) = (await self.fetch(sql, (*params, start)))[0]
        return Measure(float(t), float(r), float(c))

    async def events_scope(self, scope: str, since: float) -> list[tuple[float, Measure]]:
        cond, params = scope_condition(scope)
        start = await self._since(scope, since)
        sql = (
            f"SELECT ts, total_tokens, requests, cost_usd FROM ledger WHERE {cond} AND ts>=? "
            "AND status!='pending' AND (total_tokens>0 OR requests>0 OR cost_usd>0) ORDER BY ts"
        )
        rows = await self.fetch(sql, (*params, start))
        return [(float(ts), Measure(float(t), float(r), float(c))) for ts, t, r, c in rows]

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

    async def record_reset(self, scope: str, at: float) -> None:
        await self._submit("INSERT INTO resets (scope, at) VALUES ($1, $2)", (scope, at))

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

    # -- management state (see storage/management.py) -------------------------------------
    async def save_provider(self, name: str, preset: str, at: float) -> None:
        await self._changed(
            "INSERT INTO managed_providers (name, preset, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET preset=EXCLUDED.preset, created_at=EXCLUDED.created_at",
            (name, preset, at),
        )

    async def managed_providers(self) -> list[tuple[str, str]]:
        rows = await self.fetch("SELECT name, preset FROM managed_providers ORDER BY created_at")
        return [(str(n), str(p)) for n, p in rows]

    async def save_key(self, key: ManagedKeyRow) -> None:
        await self._changed(
            "INSERT INTO managed_keys (id, provider, secret_enc, secret_hash, quota_total, "
            "created_at) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (id) DO UPDATE SET "
            "provider=EXCLUDED.provider, secret_enc=EXCLUDED.secret_enc, "
            "secret_hash=EXCLUDED.secret_hash, quota_total=EXCLUDED.quota_total, "
            "created_at=EXCLUDED.created_at",
            (
                key.id,
                key.provider,
                key.secret_enc,
                key.secret_hash,
                key.quota_total,
                key.created_at,
            ),
        )

    async def delete_key(self, key_id: str) -> None:
        await self._changed("DELETE FROM managed_keys WHERE id=$1", (key_id,))

    async def managed_keys(self) -> list[ManagedKeyRow]:
        rows = await self.fetch(
            "SELECT id, provider, secret_enc, secret_hash, quota_total, created_at "
            "FROM managed_keys ORDER BY created_at, id"
        )
        return [ManagedKeyRow(str(a), str(b), bytes(c), str(d), float(e), float(f)) for a, b, c, d, e, f in rows]  # fmt: skip

    async def save_agent(self, name: str, key_hash: str, spec_json: str, at: float) -> None:
        await self._changed(
            "INSERT INTO agents (name, key_hash, spec_json, created_at) VALUES ($1,$2,$3,$4) "
            "ON CONFLICT (name) DO UPDATE SET key_hash=EXCLUDED.key_hash, "
            "spec_json=EXCLUDED.spec_json, created_at=EXCLUDED.created_at",
            (name, key_hash, spec_json, at),
        )

    async def delete_agent(self, name: str) -> None:
        await self._changed("DELETE FROM agents WHERE name=$1", (name,))

    async def stored_agents(self) -> list[tuple[str, str, str]]:
        rows = await self.fetch("SELECT name, key_hash, spec_json FROM agents ORDER BY created_at")
        return [(str(n), str(h), str(s)) for n, h, s in rows]

    async def set_setting(self, name: str, value: str | None) -> None:
        await self._submit(
            "INSERT INTO settings (name, value) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET value=EXCLUDED.value",
            (name, value),
        )

    async def get_setting(self, name: str) -> str | None:
        v = await self._val("SELECT value FROM settings WHERE name=?", name)
        return None if v is None else str(v)

    async def _changed(self, sql: str, params: tuple[Any, ...]) -> None:
        """A change of managed keys or agents, committed with a bump of :data:`MGMT_VERSION`
        (queued in the same turn, so in the same batch: one transaction)."""
        await asyncio.gather(self._submit(sql, params), self._submit(_BUMP, (MGMT_VERSION,)))

    async def bump_mgmt_version(self) -> None:
        await self._submit(_BUMP, (MGMT_VERSION,))

    async def mgmt_version(self) -> int:
        """Bumped by every change of managed keys, providers or agents (other replicas poll it)."""
        v = await self._val("SELECT value FROM settings WHERE name=?", MGMT_VERSION)
        return int(v) if v is not None else 0

    async def claim_setting(self, name: str, value: str) -> str:
        """Store ``value`` unless the setting exists (atomic); returns the stored value."""
        await self._submit(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            (name, value),
        )
        stored = await self.get_setting(name)
        assert stored is not None
        return stored

    async def add_alert(self, alert: AlertRow, level: float | None) -> None:
        """Record an alert and (when given) the level its subject reached, in one commit."""
        futs = [
            self._submit(
                "INSERT INTO alerts (ts, kind, subject, level, message) VALUES ($1,$2,$3,$4,$5)",
                (alert.ts, alert.kind, alert.subject, alert.level, alert.message),
            )
        ]
        if level is not None:
            futs.append(self._set_level(alert.subject, level))
        await asyncio.gather(*futs)

    def _set_level(self, subject: str, level: float) -> asyncio.Future[None]:
        return self._submit(
            "INSERT INTO alert_state (subject, level) VALUES ($1, $2) "
            "ON CONFLICT (subject) DO UPDATE SET level=EXCLUDED.level",
            (subject, level),
        )

    async def set_alert_level(self, subject: str, level: float) -> None:
        await self._set_level(subject, level)

    async def alert_levels(self) -> dict[str, float]:
        rows = await self.fetch("SELECT subject, level FROM alert_state")
        return {str(s): float(v) for s, v in rows}

    async def list_alerts(self, limit: int = 100) -> list[AlertRow]:
        rows = await self.fetch(
            "SELECT ts, kind, subject, level, message, id FROM alerts ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AlertRow(float(t), str(k), str(s), str(lv), str(m), int(i)) for t, k, s, lv, m, i in rows]  # fmt: skip

    async def usage_by(
        self, group: Sequence[str], since: float, until: float | None = None,
        agent: str | None = None,
    ) -> dict[tuple[str, ...], Measure]:  # fmt: skip
        """Usage of settled rows in ``[since, until)`` grouped by ledger columns
        (``agent``, ``provider``, ``key_id``, ``model``), resets not applied."""
        cols = [c for c in group if c in ("agent", "provider", "key_id", "model")]
        if len(cols) != len(group):
            raise ValueError(f"cannot group usage by {list(group)}")
        where = "ts>=? AND status!='pending'"
        params: list[Any] = [since]
        if until is not None:
            where += " AND ts<?"
            params.append(until)
        if agent is not None:
            where += " AND agent=?"
            params.append(agent)
        select = ", ".join(cols) if cols else "''"
        sql = (
            f"SELECT {select}, COALESCE(SUM(total_tokens),0), COALESCE(SUM(requests),0), "
            f"COALESCE(SUM(cost_usd),0) FROM ledger WHERE {where}"
            + (f" GROUP BY {select}" if cols else "")
        )
        out: dict[tuple[str, ...], Measure] = {}
        for row in await self.fetch(sql, tuple(params)):
            n = len(cols) or 1
            key = tuple(str(v) for v in row[:n]) if cols else ()
            out[key] = Measure(float(row[n]), float(row[n + 1]), float(row[n + 2]))
        return out

    async def agents_seen(self, since: float) -> list[str]:
        rows = await self.fetch("SELECT DISTINCT agent FROM ledger WHERE ts>=?", (since,))
        return sorted(str(r[0]) for r in rows)

    # -- reports (issue 5) -----------------------------------------------------------------
    async def usage_totals(
        self, group: str, since: float | None = None, until: float | None = None
    ) -> list[UsageTotals]:
        if group not in USAGE_GROUPS:
            raise ValueError(f"unknown grouping {group!r} (use one of {', '.join(USAGE_GROUPS)})")
        column = _GROUP_COLUMNS[group]
        where, params = span("status!='pending'", since, until)
        sql = (
            f"SELECT {column} AS g, COUNT(*), COALESCE(SUM(requests),0), "
            "COUNT(*) FILTER (WHERE status IN ('error','crashed')), "
            "COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), "
            "COALESCE(SUM(total_tokens),0), COALESCE(SUM(cost_usd),0), MAX(provider) "
            f"FROM ledger WHERE {where} GROUP BY g ORDER BY g"
        )
        out = []
        for g, n, r, e, p, c, t, cost, prov in await self.fetch(sql, params):
            out.append(
                UsageTotals(
                    group=group_text(g),
                    attempts=int(n),
                    requests=int(r),
                    errors=int(e),
                    prompt_tokens=int(p),
                    completion_tokens=int(c),
                    total_tokens=int(t),
                    cost_usd=float(cost),
                    provider=str(prov or "") if group == "key" else "",
                )
            )
        return out

    async def burn_events(
        self, scope: str, since: float, until: float
    ) -> list[tuple[float, Measure]]:
        cond, cparams = scope_condition(scope)
        where, params = span(cond, since, until)
        sql = (
            f"SELECT ts, total_tokens, requests, cost_usd FROM ledger WHERE {where} "
            "AND status!='pending' AND (total_tokens>0 OR requests>0 OR cost_usd>0) ORDER BY ts"
        )
        rows = await self.fetch(sql, (*cparams, *params))
        return [(float(ts), Measure(float(t), float(r), float(c))) for ts, t, r, c in rows]

    async def probe_results(self, since: float | None = None) -> list[LedgerRow]:
        where, params = span("source='probe' AND status!='pending'", since, None)
        sql = (
            f"SELECT {_COLUMNS} FROM ledger WHERE id IN (SELECT MAX(id) FROM ledger "
            f"WHERE {where} GROUP BY key_id, model) ORDER BY key_id, model"
        )
        return [_row(t) for t in await self.fetch(sql, params)]

    # -- learning (issue 7) ----------------------------------------------------------------
    async def request_rows(self, request_id: str) -> list[LedgerRow]:
        """Every attempt of one request, first attempt first."""
        sql = f"SELECT {_COLUMNS} FROM ledger WHERE request_id=? ORDER BY attempt, id"
        return [_row(t) for t in await self.fetch(sql, (request_id,))]

    async def load_model_stats(self) -> list[ModelStats]:
        rows = await self.fetch("SELECT data FROM model_stats ORDER BY key_id, model")
        return [ModelStats.from_record(json.loads(data)) for (data,) in rows]

    async def save_model_stats(self, stats: Sequence[ModelStats], at: float) -> None:
        futs = [
            self._submit(
                "INSERT INTO model_stats (key_id, model, provider, updated_at, data) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id, model) DO UPDATE SET "
                "provider=EXCLUDED.provider, updated_at=EXCLUDED.updated_at, data=EXCLUDED.data",
                (st.key_id, st.model, st.provider, at, json.dumps(st.to_record())),
            )
            for st in stats
        ]
        if futs:
            await asyncio.gather(*futs)


_GROUP_COLUMNS = {
    "total": "'total'",
    "provider": "provider",
    "key": "key_id",
    "agent": "agent",
    "model": "model",
    "slot": f"FLOOR(ts / {SLOT_S:g}) * {SLOT_S:g}",
}
