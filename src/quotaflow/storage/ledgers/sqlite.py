"""The embedded ledger: SQLite in WAL mode with group commit.

Writes are queued and a single writer task commits everything queued so far in one
transaction; each caller's ``await`` returns only after the transaction holding its row
has committed. With ``synchronous=NORMAL`` a commit is a write to the WAL file, so a
``kill -9`` of the process loses nothing that was committed (power loss may lose the
last transactions; set ``synchronous: full`` in the config to rule that out too).
WAL checkpoints (and their fsyncs) run off the event loop, never inside a commit; the WAL
starts over between two commits (:mod:`quotaflow.storage.ledgers.checkpoint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from quotaflow.clock import Clock, SystemClock
from quotaflow.errors import StorageUnusable
from quotaflow.storage.base import (
    SLOT_S,
    LedgerRow,
    LedgerUnavailable,
    MinuteStats,
    RequestCounts,
)
from quotaflow.storage.files import private_file, private_folder
from quotaflow.storage.ledgers.checkpoint import (
    LIMIT_RATIO,
    TRIGGER_FRAMES,
    Checkpointer,
    writer_pragmas,
)
from quotaflow.storage.ledgers.recent import MINUTE_S, RecentView, read_seed
from quotaflow.storage.ledgers.sql import (
    COMPACT_CHUNK_S,
    FOLD_TABLE,
    SqlLedger,
    compaction_steps,
)
from quotaflow.storage.outage import Outage
from quotaflow.storage.outbox import SqlOutbox
from quotaflow.types import Measure

# Primary result codes of writes that fail for a while and then succeed again on their own
# (space freed, a lock released, the device back or remounted read-write): SQLITE_BUSY,
# SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL.
_TRANSIENT = frozenset({5, 6, 8, 10, 13})

_BUMP = (
    "INSERT INTO settings (name, value) VALUES (?, '1') ON CONFLICT (name) "
    "DO UPDATE SET value = CAST(COALESCE(settings.value, '0') AS INTEGER) + 1"
)

# Binding a None costs the sqlite3 module about ten times what binding a number does (it
# looks for an adapter every time), and most nullable columns of a ledger row are NULL. So
# NULLs are written as SQL, not bound: an insert leaves those columns out (their default is
# NULL), a finish sets ``col=NULL``; one statement per pattern of NULLs, all made here.
_NULLABLE = ("latency_ms", "ttfb_ms", "error_kind", "http_status", "detail")
_INSERT_COLUMNS = (
    "request_id",
    "attempt",
    "ts",
    "agent",
    "route",
    "provider",
    "key_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "requests",
    "cost_usd",
    "status",
    "estimated",
    "stream",
    "reserved_tokens",
    "reserved_cost",
    "source",
    "door",
)
_FINISH_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "requests",
    "cost_usd",
    "status",
    "estimated",
)
_NullPattern = tuple[bool, bool, bool, bool, bool]  # which of _NULLABLE are None
# A statement, who waits for it, and the ledger row it writes (for the in-memory minutes).
_Write = tuple[str, tuple[Any, ...], "asyncio.Future[None]", LedgerRow | None]
# A batch as it commits: other statements, pending inserts, settled inserts, finishes.
_Batch = tuple[list[_Write], list[_Write], list[_Write], list[_Write]]


def _insert_sql(nulls: _NullPattern) -> str:
    # The id is SQLite's to assign, so several processes (a server and a CLI command) can
    # write to one ledger; an attempt is found again by its request id and number.
    cols = [*_INSERT_COLUMNS, *(c for c, null in zip(_NULLABLE, nulls, strict=True) if not null)]
    return f"INSERT INTO ledger ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def _finish_sql(nulls: _NullPattern) -> str:
    sets = [f"{c}=?" for c in _FINISH_COLUMNS]
    sets += [f"{c}=NULL" if null else f"{c}=?" for c, null in zip(_NULLABLE, nulls, strict=True)]
    return (
        f"UPDATE ledger SET {', '.join(sets)} WHERE request_id=? AND attempt=? AND status='pending'"
    )


_PATTERNS: list[_NullPattern] = [
    (a, b, c, d, e)
    for a in (False, True)
    for b in (False, True)
    for c in (False, True)
    for d in (False, True)
    for e in (False, True)
]
_INSERTS = {p: _insert_sql(p) for p in _PATTERNS}
_FINISHES = {p: _finish_sql(p) for p in _PATTERNS}
_INSERT_SQL = frozenset(_INSERTS.values())
_FINISH_SQL = frozenset(_FINISHES.values())
_ALL_NULL = (None, None, None, None, None)
_INSERT_ALL_NULL = _INSERTS[True, True, True, True, True]  # a pending row
# The rollups are kept by UPDATE triggers only (migrations 008 and 010): a row settled from
# the start (a refusal, an appended row) is inserted as pending and settled here, by its id,
# in the same transaction.
_STATUS_AT = _INSERT_COLUMNS.index("status")
_SETTLE_BY_ID = "UPDATE ledger SET status=? WHERE id=?"
_CRASHED = (
    "UPDATE ledger SET status='crashed', estimated=1, requests=1, "
    "total_tokens=reserved_tokens, cost_usd=reserved_cost, "
    "detail='left pending by a crash; charged at its reserved worst case' "
    "WHERE status='pending'"
)


def _insert(r: LedgerRow) -> tuple[str, tuple[Any, ...]]:
    """The INSERT of a row and its parameters."""
    params = (
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
        r.status,
        int(r.estimated),
        int(r.stream),
        r.reserved_tokens,
        float(r.extra.get("reserved_cost", 0.0)),
        r.source,
        r.door,
    )
    nullable = (r.latency_ms, r.ttfb_ms, r.error_kind, r.http_status, r.detail)
    if nullable == _ALL_NULL:
        return _INSERT_ALL_NULL, params
    return _with_nullable(_INSERTS, params, nullable, ())


def _finish(r: LedgerRow) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE that finalizes a pending row (by request id and attempt), and its parameters."""
    params = (
        r.prompt_tokens,
        r.completion_tokens,
        r.cached_tokens,
        r.total_tokens,
        r.requests,
        r.cost_usd,
        r.status,
        int(r.estimated),
    )
    nullable = (r.latency_ms, r.ttfb_ms, r.error_kind, r.http_status, r.detail)
    return _with_nullable(_FINISHES, params, nullable, (r.request_id, r.attempt))


def _with_nullable(
    statements: dict[_NullPattern, str],
    params: tuple[Any, ...],
    nullable: tuple[Any, Any, Any, Any, Any],
    tail: tuple[Any, ...],
) -> tuple[str, tuple[Any, ...]]:
    a, b, c, d, e = nullable
    sql = statements[a is None, b is None, c is None, d is None, e is None]
    return sql, (*params, *[v for v in nullable if v is not None], *tail)


def _runs(stmts: list[_Write]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Consecutive statements of the same SQL as one ``(sql, [params, …])``, in order."""
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    for sql, params, *_ in stmts:
        if out and out[-1][0] == sql:
            out[-1][1].append(params)
        else:
            out.append((sql, [params]))
    return out


def _classify(batch: list[_Write]) -> _Batch:
    """A batch in the order it commits. Ledger inserts and finishes commute within a batch (a
    row's finish is only submitted after its insert committed), so the inserts go first, then
    the finishes, each kind in the order it came and in one executemany per run of the same
    statement; any other statement runs before them, in the order it came. SQLite numbers
    the inserted rows in this order."""
    inserts: list[_Write] = []
    settled: list[_Write] = []
    finishes: list[_Write] = []
    others: list[_Write] = []
    for w in batch:
        sql = w[0]
        if sql in _INSERT_SQL:
            (inserts if w[1][_STATUS_AT] == "pending" else settled).append(w)
        elif sql in _FINISH_SQL:
            finishes.append(w)
        else:
            others.append(w)
    return others, inserts, settled, finishes


def unusable_database(path: Path, exc: BaseException) -> StorageUnusable:
    """The one-line refusal for a ledger file SQLite cannot use, with what to do about it."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        advice = (
            "it is damaged: restore it from a backup, or move it aside to start an empty ledger"
        )
    else:
        advice = (
            "it cannot be opened for writing: check the permissions and free space of the "
            "file and its folder, or choose another --home"
        )
    return StorageUnusable(f"the ledger database {path.resolve()} is unusable ({reason}); {advice}")


def _migrate(db: sqlite3.Connection, script: str) -> None:
    try:
        db.executescript(script)
    except sqlite3.OperationalError as exc:
        # SQLite's ADD COLUMN has no IF NOT EXISTS: a migration adding a column (one
        # statement alone in its file) fails this way on every open after the first.
        if "duplicate column name" not in str(exc):
            raise


def _migrations() -> list[str]:
    folder = resources.files("quotaflow.storage.ledgers") / "migrations" / "sqlite"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(folder / n).read_text(encoding="utf-8") for n in names]


class SqliteLedger(SqlOutbox, SqlLedger):
    """Ledger (and small state tables) in ``<data>/quotaflow.db``."""

    shared = False  # one data folder, one server: the management state is this process's
    SLOT_SQL = f"CAST(ts / {SLOT_S:g} AS INTEGER) * {SLOT_S:g}"
    BUMP_SQL = _BUMP

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        checkpoint_frames: int = TRIGGER_FRAMES,
        clock: Clock | None = None,
    ) -> None:
        self.path = path
        self._clock = clock or SystemClock()
        # The last hour per minute, in memory (keep_recent(): the serving process only).
        self._keep_recent = False
        self._recent: RecentView | None = None
        self._seeding: asyncio.Task[None] | None = None
        self._thread_commit = False  # the writer's connection is busy on a thread
        self._sync = synchronous
        self._checkpoint_frames = checkpoint_frames
        self.checkpointer: Checkpointer | None = None
        self._db: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._pending: list[_Write] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._compacting = False  # commits wait on a thread while compaction holds the lock
        self.outage = Outage(
            f"the ledger at {path}",
            "free disk space or make the data folder writable: requests get 503 with "
            "Retry-After until ledger writes succeed again",
            problem="cannot be written",
            back="can be written again",
        )
        # Told each group commit's duration (the metrics' ledger commit histogram).
        self.on_commit: Callable[[float], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync}")
        db.execute("PRAGMA busy_timeout=5000")
        try:  # SQLite's math functions (forecasts weigh use by age in SQL) are a build option
            db.execute("SELECT exp(0)")
        except sqlite3.OperationalError:
            db.create_function("exp", 1, math.exp, deterministic=True)
        return db

    async def open(self) -> None:
        try:
            private_folder(self.path.parent)
            private_file(self.path)  # SQLite gives the -wal and -shm files the database's mode
            db = self._connect()
            for side in ("-wal", "-shm"):  # made by an older version: tighten them too
                if (wal := self.path.with_name(self.path.name + side)).exists():
                    private_file(wal)
            for script in _migrations():
                _migrate(db, script)
            writer_pragmas(db)
        except (sqlite3.Error, OSError) as exc:
            raise unusable_database(self.path, exc) from None
        self._db = db
        self.checkpointer = Checkpointer(
            self.path,
            trigger_frames=self._checkpoint_frames,
            limit_frames=LIMIT_RATIO * self._checkpoint_frames,
        )
        self.checkpointer.start()
        self._read = self._connect()
        self._wake = asyncio.Event()
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name="quotaflow-ledger-writer")
        if self._keep_recent:  # seeded off the event loop, while the server starts
            self._seeding = asyncio.create_task(self._seed(), name="quotaflow-ledger-minutes")

    async def recent_seeded(self) -> bool:
        """Wait for the view of the last hour being seeded, if one is; whether it is ready."""
        if self._seeding is not None:
            await asyncio.shield(self._seeding)
        return self._recent is not None and self._recent.ready

    def keep_recent(self) -> None:
        """This process serves: keep the last hour per minute in memory (from the next
        :meth:`open`), fed by the writer, for the dashboard's reads of that hour."""
        self._keep_recent = True

    async def close(self) -> None:
        if self._seeding is not None:  # a seed's read on a thread is not cancelled midway
            with contextlib.suppress(Exception):
                await self._seeding
            self._seeding = None
        self._recent = None
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._writer is not None:
            await self._writer
        checkpointer, self.checkpointer = self.checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()  # the writer's close checkpoints what is left
        for db in (self._db, self._read):
            if db is not None:
                db.close()
        self._db = self._read = None
        if checkpointer is not None:
            checkpointer.release()  # the -shm file, once SQLite is done with it

    # -- group commit ----------------------------------------------------------------------
    async def _write_loop(self) -> None:
        assert self._wake is not None
        assert self._db is not None
        assert self.checkpointer is not None
        db, checkpointer = self._db, self.checkpointer
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # let requests woken in the same turn join this batch
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                t0 = time.perf_counter()
                parts = _classify(batch)
                if self._compacting:
                    # Compaction holds the write lock for a chunk at a time: this commit
                    # waits for it on a thread, not on the event loop.
                    self._thread_commit = True
                    try:
                        error = await asyncio.to_thread(self._commit, db, parts, len(batch))
                    finally:
                        self._thread_commit = False
                else:
                    error = self._commit(db, parts, len(batch))
                self._resolve(batch, error)
                if error is None and self._recent is not None:
                    others, inserts, settled, finishes = parts
                    self._recent.committed(
                        any(w[0] == _CRASHED for w in others),
                        [r for *_, r in inserts if r is not None],
                        [r for *_, r in settled if r is not None],
                        [r for *_, r in finishes if r is not None],
                    )
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - t0)
                if checkpointer.after_commit() and not self._compacting:
                    # The WAL starts over between two commits: requests queued meanwhile
                    # wait for it (a RESTART with little left to copy) in the next batch.
                    # It makes its one write on this connection (other connections' commits
                    # would send the last hour's reads to SQL): not used here meanwhile.
                    loop = asyncio.get_running_loop()
                    self._thread_commit = True
                    try:
                        await loop.run_in_executor(checkpointer.restarter, checkpointer.restart, db)
                    finally:
                        self._thread_commit = False
            if self._closing and not self._pending:
                return  # everything queued before close() is committed

    def _commit(self, db: sqlite3.Connection, parts: _Batch, size: int) -> Exception | None:
        """Commit a batch (:func:`_classify`'s parts) in one transaction: None, or what its
        waiting requests get."""
        others, inserts, settled, finishes = parts
        try:
            db.execute("BEGIN")
            for sql, params, *_ in others:
                db.execute(sql, params)
            for sql, runs in _runs(inserts):
                db.executemany(sql, runs)
            for sql, params, *_ in settled:
                status = params[_STATUS_AT]
                pending = (*params[:_STATUS_AT], "pending", *params[_STATUS_AT + 1 :])
                row_id = db.execute(sql, pending).lastrowid
                db.execute(_SETTLE_BY_ID, (status, row_id))
            for sql, runs in _runs(finishes):
                db.executemany(sql, runs)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            return self._write_failed(exc, size)
        self.outage.answered()
        return None

    @staticmethod
    def _resolve(batch: list[_Write], error: Exception | None) -> None:
        """Release the requests waiting for a batch (on the event loop)."""
        for _, _, fut, _ in batch:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    def _write_failed(self, exc: sqlite3.Error, rows: int) -> Exception:
        """What the waiting requests get for a batch that did not commit. A full disk, an I/O
        error or a lock held too long pass: 503 with Retry-After, logged once per episode
        (the next commit that succeeds ends it); anything else is a bug and stays as is."""
        code = getattr(exc, "sqlite_errorcode", None)
        if (code or 0) & 0xFF not in _TRANSIENT:
            return exc
        self.outage.failed(f"{exc}; {rows} row(s) not committed")
        return LedgerUnavailable(
            f"The ledger cannot be written ({exc}); retry shortly.",
            headers={"retry-after": "5"},
        )

    @property
    def queue_depth(self) -> int:
        """Writes waiting for the next group commit."""
        return len(self._pending)

    def _submit(
        self, sql: str, params: tuple[Any, ...], row: LedgerRow | None = None
    ) -> asyncio.Future[None]:
        if self._wake is None or self._closing:
            raise RuntimeError("ledger is not open")  # a write after close would never commit
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((sql, params, fut, row))
        self._wake.set()
        return fut

    def _write(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        return self._submit(sql, params)  # SQLite's placeholders are the shared SQL's

    def _upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        marks = ", ".join("?" for _ in columns)
        return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})"

    def _insert_new(self, table: str, columns: Sequence[str], key: str) -> str:
        marks = ", ".join("?" for _ in columns)
        return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})"

    # -- LedgerStore ---------------------------------------------------------------------
    async def begin(self, row: LedgerRow) -> int:
        await self._submit(*_insert(row), row)
        return 0  # SQLite assigns the id; the attempt is (request_id, attempt)

    async def finish(self, row: LedgerRow) -> None:
        await self._submit(*_finish(row), row)

    async def append(self, rows: Sequence[LedgerRow]) -> None:
        futs = []
        for r in rows:
            futs.append(self._submit(*_insert(r), r))
        if futs:
            await asyncio.gather(*futs)

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._read is not None
        with self._read_lock:
            return self._read.execute(sql, params).fetchall()

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query off the event loop."""
        return await asyncio.to_thread(self._fetch, sql, params)

    async def _compact(self, cutoff: float) -> int:
        self._compacting = True
        try:
            return await asyncio.to_thread(self._compact_sync, cutoff)
        finally:
            self._compacting = False

    def _compact_sync(self, cutoff: float) -> int:
        """Compaction on a connection of its own, one chunk per transaction (the server's
        commits get the lock between chunks)."""
        db = self._connect()
        deleted = 0
        try:
            db.execute(FOLD_TABLE)
            (lo,) = db.execute("SELECT MIN(ts) FROM ledger WHERE ts<?", (cutoff,)).fetchone()
            while lo is not None and lo < cutoff:
                lo = float(lo) // COMPACT_CHUNK_S * COMPACT_CHUNK_S
                hi = min(lo + COMPACT_CHUNK_S, cutoff)
                db.execute("BEGIN IMMEDIATE")
                try:
                    steps = compaction_steps(lo, hi)
                    for i, (sql, params) in enumerate(steps):
                        cur = db.execute(sql, params)
                        if i >= len(steps) - 2:
                            deleted += max(cur.rowcount, 0)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                time.sleep(0.001)  # the server's writer takes the lock between chunks
                (lo,) = db.execute(
                    "SELECT MIN(ts) FROM ledger WHERE ts>=? AND ts<?", (hi, cutoff)
                ).fetchone()
        finally:
            db.close()
        return deleted

    async def pending_scope(self, scope: str, since: float) -> list[tuple[float, Measure]]:
        """No other replica writes here: nothing of theirs is in flight."""
        return []

    async def settle_crashed(self) -> int:
        rows = await self.fetch("SELECT COUNT(*) FROM ledger WHERE status='pending'")
        n = int(rows[0][0])
        if n:
            await self._submit(_CRASHED, ())
        return n

    # -- the last hour per minute, from memory (RecentView) ----------------------------------
    async def minute_stats(
        self, since: float, until: float, size: float, newest: int, quantiles: Sequence[float]
    ) -> dict[float, MinuteStats]:
        view = self._fresh_view() if size == MINUTE_S else None
        got = None if view is None else view.minute_stats(since, until, newest, quantiles)
        if got is not None:
            return got
        return await super().minute_stats(since, until, size, newest, quantiles)

    async def _request_counts_raw(self, since: float | None, until: float | None) -> RequestCounts:
        view = self._fresh_view() if since is not None and until is not None else None
        if view is not None and since is not None and until is not None:
            got = view.request_counts(since, until)
            if got is not None:
                return got
        return await super()._request_counts_raw(since, until)

    def _fresh_view(self) -> RecentView | None:
        """The in-memory view when it holds everything: seeded, and no other connection
        (a command-line tool, compaction) committed since (SQLite's ``data_version`` of the
        writer's connection tells, without reading the database). Else ``None`` (read SQL),
        and a new view is seeded meanwhile."""
        view = self._recent
        if self._db is None or self._thread_commit or (view is not None and not view.ready):
            return None
        if view is None or self._data_version() != view.version:
            if not self._keep_recent:
                return None
            if self._seeding is None or self._seeding.done():
                self._seeding = asyncio.create_task(self._seed(), name="quotaflow-ledger-minutes")
            return None
        view.advance(self._clock.now())
        return view

    def _data_version(self) -> int:
        assert self._db is not None
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    async def _seed(self) -> None:
        """Seed a new view from one read snapshot, off the event loop; what the writer
        commits after the snapshot is kept by the view and replayed on top."""
        conn = await asyncio.to_thread(self._connect)
        try:
            if self._thread_commit:  # the writer's connection is busy: the next read seeds
                self._recent = None
                return
            # In one step of the event loop (the writer commits on it): the version, then
            # the snapshot, then the view the writer feeds from the next commit on.
            version = self._data_version()
            conn.execute("BEGIN")
            conn.execute("SELECT COUNT(*) FROM ledger_meta").fetchall()
            view = self._recent = RecentView(version)
            seed = await asyncio.to_thread(read_seed, conn, self._clock.now())
        except (sqlite3.Error, OSError):
            self._recent = None  # read SQL
            return
        finally:
            await asyncio.to_thread(conn.close)
        if self._recent is view:
            view.load(seed)
