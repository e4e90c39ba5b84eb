"""What both SQL ledgers share (written with ``?`` placeholders; the PostgreSQL ledger
converts them): which rows a limit scope counts, a time span, group labels, and the
:class:`SqlLedger` base with every query the two run alike."""

from __future__ import annotations

import asyncio
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quotaflow.engine.pricing import COST_ESTIMATED
from quotaflow.engine.stats import ModelStats
from quotaflow.storage.base import (
    REQUEST_SPREAD_S,
    SLOT_S,
    USAGE_GROUPS,
    BurnSums,
    LedgerQuery,
    LedgerRow,
    MinuteStats,
    RequestCounts,
    UsageTotals,
)
from quotaflow.storage.management import MGMT_VERSION, AlertRow, ManagedKeyRow
from quotaflow.types import Measure


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


def span(
    cond: str, since: float | None, until: float | None, *, column: str = "ts"
) -> tuple[str, tuple[Any, ...]]:
    """``cond`` narrowed to ``since <= column < until`` (either bound optional)."""
    parts, params = [cond], []
    if since is not None:
        parts.append(f"{column}>=?")
        params.append(since)
    if until is not None:
        parts.append(f"{column}<?")
        params.append(until)
    return " AND ".join(parts), tuple(params)


def group_text(value: Any) -> str:
    """A group's label: a time slot (a whole float) without its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


DAY_S = 86400.0  # the daily rollup's buckets (UTC days)
# Forecasts read a scope's rows one by one up to BURN_RAW_MAX of them; beyond, the rows of
# the current 15-minute slot and before it one event per slot (at its end): a burn rate's
# inputs stay bounded at any size (and within a fraction of a percent of the rows' rate).
BURN_RAW_MAX = 2_000
_DIMS = "agent, route, provider, key_id, model, status"
_SETTLED_USE = "status NOT IN ('pending','refused')"  # a row whose use counts
_ANSWERED = "status='ok' AND source='proxy' AND latency_ms IS NOT NULL"  # a latency sample
_MEASURES = "requests, prompt_tokens, completion_tokens, total_tokens, cost_usd"


@dataclass(frozen=True, slots=True)
class Spans:
    """Where the rows of a time span are read from: ledger rows for the partial slots at its
    edges, the slot rollup for whole slots, the day rollup for whole UTC days (``None`` is
    an open end)."""

    raw: tuple[tuple[float | None, float | None], ...]
    slots: tuple[tuple[float | None, float | None], ...]
    days: tuple[float | None, float | None] | None


def _down(t: float, step: float) -> float:
    return math.floor(t / step) * step


def _up(t: float, step: float) -> float:
    return math.ceil(t / step) * step


def plan(
    since: float | None,
    until: float | None,
    *,
    days: bool = True,
    horizon: float | None = None,
) -> Spans:
    """Split ``[since, until)`` into ledger rows, whole slots and whole days.

    Before ``horizon`` (the time compacted by :meth:`SqlLedger.compact`) only the rollups
    remain: an edge falling there is moved to the start of its slot, so a partial slot of
    compacted time counts whole in the span its start is in."""
    lo, hi = since, until
    if horizon is not None:
        if lo is not None and lo < horizon:
            lo = _down(lo, SLOT_S)
        if hi is not None and hi < horizon:
            hi = _down(hi, SLOT_S)
    a = None if lo is None else _up(lo, SLOT_S)
    b = None if hi is None else _down(hi, SLOT_S)
    if a is not None and b is not None and a >= b:
        return Spans(((lo, hi),), (), None)
    raw: list[tuple[float | None, float | None]] = []
    if lo is not None and a is not None and lo < a:
        raw.append((lo, a))
    if hi is not None and b is not None and b < hi:
        raw.append((b, hi))
    if not days:
        return Spans(tuple(raw), ((a, b),), None)
    da = None if a is None else _up(a, DAY_S)
    db = None if b is None else _down(b, DAY_S)
    if da is not None and db is not None and da >= db:
        return Spans(tuple(raw), ((a, b),), None)
    slots: list[tuple[float | None, float | None]] = []
    if a is not None and da is not None and a < da:
        slots.append((a, da))
    if b is not None and db is not None and db < b:
        slots.append((db, b))
    return Spans(tuple(raw), tuple(slots), (da, db))


# -- compaction (``quotaflow compact``, settings.ledger_retention_days) -----------------------
HORIZON_TTL_S = 2.0  # how long a ledger trusts the compaction horizon it read
COMPACT_CHUNK_S = SLOT_S  # one transaction folds this much time: the write lock is held briefly
FOLD_TABLE = "CREATE TEMP TABLE IF NOT EXISTS qf_fold (request_id TEXT PRIMARY KEY)"


def compaction_steps(lo: float, hi: float) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (``?`` placeholders, one transaction) that fold ``[lo, hi)``: delete the
    rows of the proxied requests whose first attempt began there (all their attempts, so no
    request is split) and the other settled rows of the span, keeping the key tester's latest
    verdict per key × model. The rollups and ``ledger_outcomes`` already count every deleted
    row (deletes leave them as they are). The last two statements' row counts are the rows
    deleted."""
    return [
        ("DELETE FROM qf_fold", ()),
        (
            # Requests still in flight (a pending row) wait for a later compaction.
            "INSERT INTO qf_fold (request_id) SELECT request_id FROM ledger WHERE "
            "source='proxy' AND request_id IN (SELECT request_id FROM ledger WHERE "
            "source='proxy' AND ts>=? AND ts<? GROUP BY request_id HAVING MIN(ts)>=?) "
            "GROUP BY request_id HAVING SUM(CASE WHEN status='pending' THEN 1 ELSE 0 END)=0 "
            "AND MIN(ts)>=? AND MIN(ts)<?",
            (lo - REQUEST_SPREAD_S, hi, lo, lo, hi),
        ),
        (
            "INSERT INTO ledger_meta (name, value) VALUES ('compacted_before', ?) "
            "ON CONFLICT (name) DO UPDATE SET value=CASE WHEN excluded.value>ledger_meta.value "
            "THEN excluded.value ELSE ledger_meta.value END",
            (hi,),
        ),
        (
            "DELETE FROM ledger WHERE source='proxy' AND request_id IN "
            "(SELECT request_id FROM qf_fold)",
            (),
        ),
        (
            "DELETE FROM ledger WHERE ts>=? AND ts<? AND source!='proxy' AND status!='pending' "
            "AND id NOT IN (SELECT MAX(id) FROM ledger WHERE source='probe' GROUP BY key_id, model)",
            (lo, hi),
        ),
    ]


def retention_cutoff(now: float, days: float) -> float:
    """Where compaction with a retention of ``days`` stops: the start of the UTC day ``days``
    before ``now`` (rows from then on are kept as they are)."""
    return _down(now - days * DAY_S, DAY_S)


# A row whose cost is an estimate: booked at a stand-in price (no known price), or with
# tokens guessed (a stream that reported none, an attempt a crash left pending).
ESTIMATED_COST = (
    "status NOT IN ('error','refused') AND "
    f"(CAST(estimated AS INTEGER)=1 OR detail LIKE '{COST_ESTIMATED}%')"
)

COLUMNS = (
    "id, request_id, attempt, ts, agent, route, provider, key_id, model, prompt_tokens, "
    "completion_tokens, cached_tokens, total_tokens, requests, cost_usd, latency_ms, ttfb_ms, "
    "status, error_kind, http_status, estimated, stream, reserved_tokens, reserved_cost, source, "
    "detail, door"
)


def row_of(t: Sequence[Any]) -> LedgerRow:
    """A :class:`LedgerRow` from a row of :data:`COLUMNS`."""
    return LedgerRow(
        id=t[0],
        request_id=t[1],
        attempt=t[2],
        ts=t[3],
        agent=t[4],
        route=t[5],
        provider=t[6],
        key_id=t[7],
        model=t[8],
        prompt_tokens=t[9],
        completion_tokens=t[10],
        cached_tokens=t[11],
        total_tokens=t[12],
        requests=t[13],
        cost_usd=t[14],
        latency_ms=t[15],
        ttfb_ms=t[16],
        status=t[17],
        error_kind=t[18],
        http_status=t[19],
        estimated=bool(t[20]),
        stream=bool(t[21]),
        reserved_tokens=t[22],
        extra={"reserved_cost": t[23]},
        source=t[24],
        detail=t[25],
        door=t[26],
    )


class SqlLedger(ABC):
    """Everything the SQLite and PostgreSQL ledgers do with the same SQL: reads, reports,
    management state and statistics. A backend gives the connection and the dialect —
    :meth:`fetch` and :meth:`_submit` (queued, group-committed writes), how an upsert is
    spelled, the slot expression — and its own hot path (begin, finish, append)."""

    SLOT_SQL: str  # the report slot of a row's ``ts``
    BUMP_SQL: str  # bumps the management version (written in the backend's dialect)

    @abstractmethod
    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (``?`` placeholders)."""

    @abstractmethod
    def _submit(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue a write in the backend's own dialect; done once committed."""

    @abstractmethod
    def _write(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue a write written with ``?`` placeholders."""

    @abstractmethod
    def _upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """``INSERT`` of ``columns`` that replaces the row with the same ``key``."""

    @abstractmethod
    def _insert_new(self, table: str, columns: Sequence[str], key: str) -> str:
        """``INSERT`` of ``columns`` that does nothing when ``key`` exists."""

    def _put(self, table: str, key: Sequence[str], **values: Any) -> asyncio.Future[None]:
        """Queue an upsert of one row (in the caller's turn: it joins the caller's batch)."""
        return self._write(self._upsert(table, list(values), key), tuple(values.values()))

    def slot_of(self, column: str) -> str:
        """The report slot of a time column (the backend's :attr:`SLOT_SQL` on ``column``)."""
        return self.SLOT_SQL.replace("ts", column)

    _horizon: tuple[float, float | None] = (-math.inf, None)  # (read at, value)

    async def horizon(self) -> float | None:
        """Where compacted time ends: ledger rows before it were deleted by :meth:`compact`
        (read again after :data:`HORIZON_TTL_S`: another process may compact)."""
        at, value = self._horizon
        now = time.monotonic()
        if now - at > HORIZON_TTL_S:
            rows = await self.fetch("SELECT value FROM ledger_meta WHERE name='compacted_before'")
            value = float(rows[0][0]) if rows else None
            self._horizon = (now, value)
        return value

    async def _plan(self, since: float | None, until: float | None, *, days: bool = True) -> Spans:
        return plan(since, until, days=days, horizon=await self.horizon())

    def _source(
        self, spans: Spans, cond: str, params: tuple[Any, ...]
    ) -> tuple[str, tuple[Any, ...]]:
        """One row source for a span: settled ledger rows at its edges, rollup rows between,
        all with the columns ``t`` (a time or a bucket's start), the dimensions, ``n``
        (attempts), the measures and ``est`` (rows whose cost is an estimate). ``cond`` is
        applied to each part (its columns exist in the ledger and in the rollups alike)."""
        parts: list[str] = []
        out: list[Any] = []
        for lo, hi in spans.raw:
            where, p = span(f"status!='pending' AND {cond}", lo, hi)
            parts.append(
                f"SELECT ts AS t, {_DIMS}, 1 AS n, {_MEASURES}, "
                f"CASE WHEN {ESTIMATED_COST} THEN 1 ELSE 0 END AS est FROM ledger WHERE {where}"
            )
            out += [*params, *p]
        rollups = [("ledger_slots", "slot", s) for s in spans.slots]
        if spans.days is not None:
            rollups.append(("ledger_days", "day", spans.days))
        for table, bucket, (lo, hi) in rollups:
            where, p = span(cond, lo, hi, column=bucket)
            parts.append(
                f"SELECT {bucket} AS t, {_DIMS}, attempts AS n, {_MEASURES}, estimated AS est "
                f"FROM {table} WHERE {where}"
            )
            out += [*params, *p]
        return " UNION ALL ".join(parts), tuple(out)

    def _slot_source(self, spans: Spans) -> tuple[str, tuple[Any, ...]]:
        """The rows of a report by slot: ``t``, ``n`` (attempts), ``errors`` and the
        measures, from ``ledger_key_slots`` (a row per key and slot, read once) and the
        edge rows; refused rows are left out as :meth:`_source` leaves them."""
        parts: list[str] = []
        out: list[Any] = []
        for lo, hi in spans.raw:
            where, p = span("status NOT IN ('pending','refused')", lo, hi)
            parts.append(
                "SELECT ts AS t, 1 AS n, CASE WHEN status IN ('error','crashed') THEN 1 "
                f"ELSE 0 END AS errors, {_MEASURES}, "
                f"CASE WHEN {ESTIMATED_COST} THEN 1 ELSE 0 END AS est, '' AS provider "
                f"FROM ledger WHERE {where}"
            )
            out += p
        for lo, hi in spans.slots:
            where, p = span("1=1", lo, hi, column="slot")
            parts.append(
                f"SELECT slot AS t, attempts - refused AS n, errors, {_MEASURES}, "
                f"estimated AS est, '' AS provider FROM ledger_key_slots WHERE {where}"
            )
            out += p
        return " UNION ALL ".join(parts), tuple(out)

    # -- reads ------------------------------------------------------------------------------
    async def ping(self) -> None:
        await self.fetch("SELECT 1")

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
            f"SELECT {COLUMNS} FROM ledger WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?"
        )
        return [row_of(t) for t in await self.fetch(sql, (*params, q.limit))]

    def bucket_of(self, column: str, size: float) -> str:
        """The start of the ``size``-second bucket of a time column (``SLOT_SQL``'s form)."""
        return self.SLOT_SQL.replace("ts", column).replace(f"{SLOT_S:g}", f"{size:g}")

    async def minute_stats(
        self, since: float, until: float, size: float, newest: int, quantiles: Sequence[float]
    ) -> dict[float, MinuteStats]:
        """Per ``size``-second bucket: tokens per provider, and the nearest-rank quantiles of
        the latencies of the answered proxied attempts among its ``newest`` rows.

        Aggregated in SQL, so a handful of rows per bucket come back whatever the traffic
        (turning thousands of rows into Python objects on a reading thread holds the GIL the
        event loop needs): one scan for tokens and counts, then each quantile as the
        ``k``-th latency of its bucket (``ORDER BY latency_ms LIMIT … OFFSET k-1``), all in
        one statement. Buckets with more than ``newest`` rows first find their newest rows'
        lowest id (two more statements for all of them)."""
        b = self.bucket_of("ts", size)
        counts = await self.fetch(
            f"SELECT {b} AS b, provider, "
            f"COALESCE(SUM(CASE WHEN {_SETTLED_USE} THEN total_tokens ELSE 0 END),0), "
            f"SUM(CASE WHEN {_SETTLED_USE} THEN 1 ELSE 0 END), COUNT(*), "
            f"SUM(CASE WHEN {_ANSWERED} THEN 1 ELSE 0 END) "
            "FROM ledger WHERE ts>=? AND ts<? GROUP BY b, provider",
            (since, until),
        )
        tokens: dict[float, dict[str, float]] = {}
        rows: dict[float, int] = {}
        answered: dict[float, int] = {}
        for start, provider, t, settled, n, a in counts:
            start = float(start)
            mine = tokens.setdefault(start, {})
            if settled:
                mine[str(provider)] = float(t)
            rows[start] = rows.get(start, 0) + int(n)
            answered[start] = answered.get(start, 0) + int(a or 0)

        def rows_of(start: float) -> tuple[str, list[Any]]:
            # the bucket's rows, by the expression that grouped them (a row on an edge is
            # where the counts put it), found through the time index
            lo, hi = max(start - 1.0, since), min(start + size + 1.0, until)
            return f"ts>=? AND ts<? AND {b}=?", [lo, hi, start]

        # Buckets with more rows than the sample: their newest rows' lowest id, and how many
        # of those rows answered (two statements for all such buckets)
        capped = sorted(s for s, n in rows.items() if n > newest)
        floors: dict[float, int] = {}
        if capped:
            parts: list[str] = []
            params: list[Any] = []
            for i, start in enumerate(capped):
                where, p = rows_of(start)
                parts.append(
                    f"SELECT {i} AS i, (SELECT id FROM ledger WHERE {where} "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?) AS f"
                )
                params += [*p, newest - 1]
            for i, f in await self.fetch(" UNION ALL ".join(parts), tuple(params)):
                floors[capped[int(i)]] = int(f)
            parts, params = [], []
            for i, start in enumerate(capped):
                where, p = rows_of(start)
                parts.append(
                    f"SELECT {i} AS i, (SELECT COUNT(*) FROM ledger WHERE {where} "
                    f"AND id>=? AND {_ANSWERED}) AS n"
                )
                params += [*p, floors[start]]
            for i, n in await self.fetch(" UNION ALL ".join(parts), tuple(params)):
                answered[capped[int(i)]] = int(n)
        # Per minute, one sorted read covers the lowest and the highest rank asked (the
        # first and last of the window between them: p50 and p95 in one scan), and one read
        # each rank between them.
        picks: list[str] = []
        params = []
        read: list[tuple[float, int, int]] = []  # (bucket, first rank, last rank) of a pick
        for start in sorted(answered):
            n = answered[start]
            if not n:
                continue
            ranks = sorted({max(math.ceil(q * n), 1) for q in quantiles})
            windows = [(ranks[0], ranks[-1])] + [(r, r) for r in ranks[1:-1]]
            for first, last in windows:
                where, p = rows_of(start)
                where += f" AND {_ANSWERED}"
                if start in floors:
                    where += " AND id>=?"
                    p.append(floors[start])
                i = len(read)
                picks.append(
                    f"SELECT {i} AS i, MIN(x), MAX(x) FROM (SELECT latency_ms AS x FROM ledger "
                    f"WHERE {where} ORDER BY latency_ms LIMIT ? OFFSET ?) s{i}"
                )
                params += [*p, last - first + 1, first - 1]
                read.append((start, first, last))
        values: dict[float, list[float]] = {}
        if picks:
            at: dict[tuple[float, int], float] = {}
            for i, lo, hi in await self.fetch(" UNION ALL ".join(picks), tuple(params)):
                start, first, last = read[int(i)]
                at[start, first] = float(lo)
                at[start, last] = float(hi)
            for start in sorted({r[0] for r in read}):
                n = answered[start]
                values[start] = [at[start, max(math.ceil(q * n), 1)] for q in quantiles]
        return {
            start: MinuteStats(
                tokens.get(start, {}), answered.get(start, 0), tuple(values.get(start, ()))
            )
            for start in sorted(rows)
        }

    async def span_totals(self, spans: Sequence[tuple[float, float]]) -> list[tuple[Measure, bool]]:
        """Each span's :meth:`usage_by` total and whether :meth:`estimated_cost_groups`
        finds an estimate in it, every span's parts in one statement."""
        if not spans:
            return []
        parts: list[str] = []
        params: list[Any] = []
        for i, (lo, hi) in enumerate(spans):
            src, p = self._source(await self._plan(lo, hi), "status!='refused'", ())
            parts.append(
                f"SELECT {i} AS i, total_tokens, requests, cost_usd, est FROM ({src}) u{i}"
            )
            params += p
        sql = (
            "SELECT i, COALESCE(SUM(total_tokens),0), COALESCE(SUM(requests),0), "
            "COALESCE(SUM(cost_usd),0), COALESCE(SUM(est),0) FROM ("
            + " UNION ALL ".join(parts)
            + ") s GROUP BY i"
        )
        got = {int(i): (t, r, c, e) for i, t, r, c, e in await self.fetch(sql, tuple(params))}
        out = []
        for i in range(len(spans)):
            t, r, c, e = got.get(i, (0, 0, 0.0, 0))
            out.append((Measure(float(t), float(r), float(c)), int(e) > 0))
        return out

    async def _since(self, scope: str, since: float) -> float:
        rows = await self.fetch("SELECT MAX(at) FROM resets WHERE scope=?", (scope,))
        last = rows[0][0] if rows else None
        return since if last is None else max(since, float(last))

    async def sum_scope(self, scope: str, since: float) -> Measure:
        cond, params = scope_condition(scope)
        start = await self._since(scope, since)
        src, sparams = self._source(await self._plan(start, None), cond, params)
        sql = (
            "SELECT COALESCE(SUM(total_tokens),0), COALESCE(SUM(requests),0), "
            f"COALESCE(SUM(cost_usd),0) FROM ({src}) u"
        )
        (t, r, c) = (await self.fetch(sql, sparams))[0]
        return Measure(float(t), float(r), float(c))

    async def events_scope(self, scope: str, since: float) -> list[tuple[float, Measure]]:
        cond, params = scope_condition(scope)
        start = await self._since(scope, since)
        sql = (
            f"SELECT ts, total_tokens, requests, cost_usd FROM ledger WHERE {cond} AND ts>=? "
            "AND status!='pending' AND (total_tokens>0 OR requests>0 OR cost_usd>0) ORDER BY ts"
        )
        rows = await self.fetch(sql, (*params, start))
        events = [(float(ts), Measure(float(t), float(r), float(c))) for ts, t, r, c in rows]
        horizon = await self.horizon()
        if horizon is None or start >= horizon:
            return events
        # A window reaching into compacted time: one event per slot there, at the slot's end
        # (use leaves a rolling window no earlier than it would have).
        where, sparams = span(cond, _down(start, SLOT_S), horizon, column="slot")
        sql = (
            "SELECT slot, SUM(total_tokens), SUM(requests), SUM(cost_usd) FROM ledger_slots "
            f"WHERE {where} GROUP BY slot ORDER BY slot"
        )
        older = [
            (min(float(slot) + SLOT_S, horizon), Measure(float(t), float(r), float(c)))
            for slot, t, r, c in await self.fetch(sql, (*params, *sparams))
        ]
        return [(at, m) for at, m in older if m.tokens > 0 or m.requests > 0 or m.cost > 0] + events

    async def record_reset(self, scope: str, at: float) -> None:
        await self._write("INSERT INTO resets (scope, at) VALUES (?, ?)", (scope, at))

    # -- management state (see storage/management.py) -------------------------------------
    async def save_provider(self, name: str, preset: str, at: float) -> None:
        sql = self._upsert("managed_providers", ("name", "preset", "created_at"), ("name",))
        await self._changed(sql, (name, preset, at))

    async def managed_providers(self) -> list[tuple[str, str]]:
        rows = await self.fetch("SELECT name, preset FROM managed_providers ORDER BY created_at")
        return [(str(n), str(p)) for n, p in rows]

    async def save_key(self, key: ManagedKeyRow) -> None:
        columns = ("id", "provider", "secret_enc", "secret_hash", "quota_total", "created_at")
        k = key
        values = (k.id, k.provider, k.secret_enc, k.secret_hash, k.quota_total, k.created_at)
        await self._changed(self._upsert("managed_keys", columns, ("id",)), values)

    async def delete_key(self, key_id: str) -> None:
        await self._changed("DELETE FROM managed_keys WHERE id=?", (key_id,))

    async def managed_keys(self) -> list[ManagedKeyRow]:
        rows = await self.fetch(
            "SELECT id, provider, secret_enc, secret_hash, quota_total, created_at "
            "FROM managed_keys ORDER BY created_at, id"
        )
        return [
            ManagedKeyRow(str(a), str(b), bytes(c), str(d), float(e), float(f))
            for a, b, c, d, e, f in rows
        ]

    async def key_ids_seen(self) -> set[str]:
        """Every key id the store holds a trace of, so a new key never takes one: the ids
        of the usage rollups (kept through compaction; one index probe per key id), of open
        attempts, of per-key settings (``key_state:<id>``, …), of resets and alert levels of
        ``key:<id>`` scopes and of the model statistics."""
        rows = await self.fetch(
            "WITH RECURSIVE k(id) AS (SELECT MIN(key_id) FROM ledger_key_slots UNION ALL "
            "SELECT (SELECT MIN(key_id) FROM ledger_key_slots WHERE key_id > k.id) FROM k "
            "WHERE k.id IS NOT NULL) SELECT id FROM k WHERE id IS NOT NULL "
            "UNION SELECT key_id FROM ledger WHERE status='pending' "
            "UNION SELECT key_id FROM model_stats"
        )
        ids = {str(r[0]) for r in rows}
        named = await self.fetch(
            "SELECT name FROM settings WHERE name LIKE 'key%' "
            "UNION SELECT scope FROM resets WHERE scope LIKE 'key:%' "
            "UNION SELECT subject FROM alert_state WHERE subject LIKE 'key:%'"
        )
        for (name,) in named:
            head, sep, rest = str(name).partition(":")
            if sep and head.startswith("key"):
                ids.add(rest.partition("/")[0])  # key_state:<id>, key:<id>/tokens/day, …
        return ids

    async def add_agent(self, name: str, key_hash: str, spec_json: str, at: float) -> bool:
        """Store an agent unless one of that name is stored (atomic: of concurrent adds, by
        this process or by replicas sharing the store, one wins); True when this one was."""
        sql = self._insert_new("agents", ("name", "key_hash", "spec_json", "created_at"), "name")
        await self._changed(sql, (name, key_hash, spec_json, at))
        rows = await self.fetch("SELECT key_hash FROM agents WHERE name=?", (name,))
        return bool(rows) and str(rows[0][0]) == key_hash

    async def delete_agent(self, name: str) -> None:
        await self._changed("DELETE FROM agents WHERE name=?", (name,))

    async def stored_agents(self) -> list[tuple[str, str, str]]:
        rows = await self.fetch("SELECT name, key_hash, spec_json FROM agents ORDER BY created_at")
        return [(str(n), str(h), str(s)) for n, h, s in rows]

    async def set_setting(self, name: str, value: str | None) -> None:
        await self._put("settings", ("name",), name=name, value=value)

    async def get_setting(self, name: str) -> str | None:
        rows = await self.fetch("SELECT value FROM settings WHERE name=?", (name,))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    async def _changed(self, sql: str, params: tuple[Any, ...]) -> None:
        """A change of managed keys or agents, committed with a bump of :data:`MGMT_VERSION`
        (queued in the same turn, so in the same batch: one transaction)."""
        await asyncio.gather(self._write(sql, params), self._submit(self.BUMP_SQL, (MGMT_VERSION,)))

    async def bump_mgmt_version(self) -> None:
        await self._submit(self.BUMP_SQL, (MGMT_VERSION,))

    async def mgmt_version(self) -> int:
        """Bumped by every change of managed keys, providers or agents (other replicas poll it)."""
        v = await self.get_setting(MGMT_VERSION)
        return int(v) if v is not None else 0

    async def claim_setting(self, name: str, value: str) -> str:
        """Store ``value`` unless the setting exists (atomic); returns the stored value."""
        await self._write(self._insert_new("settings", ("name", "value"), "name"), (name, value))
        stored = await self.get_setting(name)
        assert stored is not None
        return stored

    async def add_alert(self, alert: AlertRow, level: float | None) -> None:
        """Record an alert and (when given) the level its subject reached, in one commit."""
        futs = [
            self._write(
                "INSERT INTO alerts (ts, kind, subject, level, message) VALUES (?,?,?,?,?)",
                (alert.ts, alert.kind, alert.subject, alert.level, alert.message),
            )
        ]
        if level is not None:
            futs.append(self._put("alert_state", ("subject",), subject=alert.subject, level=level))
        await asyncio.gather(*futs)

    async def set_alert_level(self, subject: str, level: float) -> None:
        await self._put("alert_state", ("subject",), subject=subject, level=level)

    async def alert_episode(self, subject: str) -> tuple[float, int]:
        """``subject``'s stored level and the id of its last recorded alert, read in one
        statement (one snapshot): what every replica sharing the store sees alike until
        one of them records the next crossing."""
        rows = await self.fetch(
            "SELECT (SELECT level FROM alert_state WHERE subject=?), "
            "(SELECT MAX(id) FROM alerts WHERE subject=?)",
            (subject, subject),
        )
        level, last = rows[0] if rows else (None, None)
        return float(level or 0.0), int(last or 0)

    async def alert_levels(self) -> dict[str, float]:
        rows = await self.fetch("SELECT subject, level FROM alert_state")
        return {str(s): float(v) for s, v in rows}

    async def list_alerts(self, limit: int = 100) -> list[AlertRow]:
        rows = await self.fetch(
            "SELECT ts, kind, subject, level, message, id FROM alerts ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            AlertRow(float(t), str(k), str(s), str(lv), str(m), int(i))
            for t, k, s, lv, m, i in rows
        ]

    async def usage_by(
        self,
        group: Sequence[str],
        since: float,
        until: float | None = None,
        agent: str | None = None,
    ) -> dict[tuple[str, ...], Measure]:
        """Usage of settled rows in ``[since, until)`` grouped by ledger columns
        (``agent``, ``provider``, ``key_id``, ``model``), resets not applied."""
        cols, src, params = await self._usage_source(group, since, until, agent)
        select = ", ".join(cols) if cols else "''"
        sql = (
            f"SELECT {select}, COALESCE(SUM(total_tokens),0), COALESCE(SUM(requests),0), "
            f"COALESCE(SUM(cost_usd),0) FROM ({src}) u"
            + (f" GROUP BY {select} HAVING SUM(n)>0" if cols else "")
        )
        out: dict[tuple[str, ...], Measure] = {}
        for row in await self.fetch(sql, params):
            n = len(cols) or 1
            key = tuple(str(v) for v in row[:n]) if cols else ()
            out[key] = Measure(float(row[n]), float(row[n + 1]), float(row[n + 2]))
        return out

    async def estimated_cost_groups(
        self,
        group: Sequence[str],
        since: float,
        until: float | None = None,
        agent: str | None = None,
    ) -> set[tuple[str, ...]]:
        cols, src, params = await self._usage_source(group, since, until, agent)
        select = ", ".join(cols) if cols else "''"
        sql = f"SELECT DISTINCT {select} FROM ({src}) u WHERE est>0"  # est counts rows: ≥ 0
        return {tuple(str(v) for v in row[: len(cols)]) for row in await self.fetch(sql, params)}

    async def _usage_source(
        self, group: Sequence[str], since: float, until: float | None, agent: str | None
    ) -> tuple[list[str], str, tuple[Any, ...]]:
        """The columns and the row source of a ``usage_by``-style read."""
        cols = [c for c in group if c in ("agent", "provider", "key_id", "model")]
        if len(cols) != len(group):
            raise ValueError(f"cannot group usage by {list(group)}")
        cond = "status!='refused'"  # a refusal used nothing
        params: tuple[Any, ...] = ()
        if agent is not None:
            cond += " AND agent=?"
            params = (agent,)
        src, sparams = self._source(await self._plan(since, until), cond, params)
        return cols, src, sparams

    async def agents_seen(self, since: float) -> list[str]:
        src, params = self._source(await self._plan(since, None), "1=1", ())
        sql = (
            f"SELECT DISTINCT agent FROM ({src}) u UNION "
            "SELECT agent FROM ledger WHERE status='pending' AND ts>=?"
        )
        rows = await self.fetch(sql, (*params, since))
        return sorted({str(r[0]) for r in rows})

    # -- reports -----------------------------------------------------------------------------
    async def usage_totals(
        self, group: str, since: float | None = None, until: float | None = None
    ) -> list[UsageTotals]:
        if group not in USAGE_GROUPS:
            raise ValueError(f"unknown grouping {group!r} (use one of {', '.join(USAGE_GROUPS)})")
        column = self.slot_of("t") if group == "slot" else _GROUP_COLUMNS[group]
        # a refused request is no attempt: request_counts() counts it
        spans = await self._plan(since, until, days=group != "slot")
        if group == "slot":  # every slot of the span: from the per-key slot rollup
            src, params = self._slot_source(spans)
            errors = "errors"
        else:
            src, params = self._source(spans, "status!='refused'", ())
            errors = "CASE WHEN status IN ('error','crashed') THEN n ELSE 0 END"
        sql = (
            f"SELECT {column} AS g, COALESCE(SUM(n),0), COALESCE(SUM(requests),0), "
            f"COALESCE(SUM({errors}),0), "
            "COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), "
            "COALESCE(SUM(total_tokens),0), COALESCE(SUM(cost_usd),0), MAX(provider), "
            f"COALESCE(SUM(est),0) FROM ({src}) u GROUP BY g ORDER BY g"
        )
        return [
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
                estimated_cost=int(est),
            )
            for g, n, r, e, p, c, t, cost, prov, est in await self.fetch(sql, params)
            if n
        ]

    async def request_counts(
        self, since: float | None = None, until: float | None = None
    ) -> RequestCounts:
        """Whole slots from ``ledger_outcomes`` (kept at commit), the partial slots at the
        edges from the rows."""
        spans = await self._plan(since, until, days=False)
        total = RequestCounts()
        for lo, hi in spans.raw:
            total += await self._request_counts_raw(lo, hi)
        for lo, hi in spans.slots:
            where, params = span("1=1", lo, hi, column="slot")
            got = await self.fetch(
                "SELECT COALESCE(SUM(answered),0), COALESCE(SUM(refused),0), "
                f"COALESCE(SUM(failed),0) FROM ledger_outcomes WHERE {where}",
                params,
            )
            a, r, f = got[0]
            total += RequestCounts(int(a), int(r), int(f))
        return total

    async def _request_counts_raw(self, since: float | None, until: float | None) -> RequestCounts:
        # A request belongs where its first attempt began; its attempts are read from
        # REQUEST_SPREAD_S before ``since`` (one begun before is not counted here) to as long
        # after ``until``, so that it is counted once, by how it ended.
        where, params = span(
            "source='proxy' AND status!='pending'",
            None if since is None else since - REQUEST_SPREAD_S,
            None if until is None else until + REQUEST_SPREAD_S,
        )
        first, first_params = span("1=1", since, until, column="MIN(ts)")
        # Grouped by an expression: a short span reads the ts index, not every request id.
        sql = (
            "SELECT outcome, COUNT(*) FROM (SELECT CASE "
            "WHEN SUM(CASE WHEN status='ok' THEN 1 ELSE 0 END)>0 THEN 'answered' "
            "WHEN SUM(CASE WHEN status='refused' THEN 1 ELSE 0 END)>0 THEN 'refused' "
            f"ELSE 'failed' END AS outcome FROM ledger WHERE {where} GROUP BY request_id || '' "
            f"HAVING {first}) o GROUP BY outcome"
        )
        counts = {str(k): int(n) for k, n in await self.fetch(sql, (*params, *first_params))}
        return RequestCounts(
            counts.get("answered", 0), counts.get("refused", 0), counts.get("failed", 0)
        )

    async def burn_events(
        self, scope: str, since: float, until: float
    ) -> list[tuple[float, Measure]]:
        """Row by row while the span holds at most :data:`BURN_RAW_MAX` attempts; beyond, the
        current slot row by row and before it one event per slot with use, stamped at the
        slot's end. Compacted time is read as slots."""
        kind, _, name = scope.partition(":")
        if kind == "key":
            return (await self.burn_events_of_keys([name], since, until))[name]
        cond, cparams = scope_condition(scope)
        where, params = span(cond, _down(since, SLOT_S), until, column="slot")
        slots = await self.fetch(
            "SELECT slot, SUM(total_tokens), SUM(requests), SUM(cost_usd), SUM(attempts) "
            f"FROM ledger_slots WHERE {where} GROUP BY slot ORDER BY slot",
            (*cparams, *params),
        )
        return await self._burn(cond, cparams, since, until, slots)

    async def burn_events_of_keys(
        self, key_ids: Sequence[str], since: float, until: float
    ) -> dict[str, list[tuple[float, Measure]]]:
        """:meth:`burn_events` of several keys' scopes, their slots read together from the
        per-key slot rollup (a forecast reads every key's)."""
        if not key_ids:
            return {}
        marks = ", ".join("?" for _ in key_ids)
        where, params = span(f"key_id IN ({marks})", _down(since, SLOT_S), until, column="slot")
        by: dict[str, list[tuple[Any, ...]]] = {k: [] for k in key_ids}
        for key_id, *rest in await self.fetch(
            "SELECT key_id, slot, total_tokens, requests, cost_usd, attempts "
            f"FROM ledger_key_slots WHERE {where} ORDER BY key_id, slot",
            (*key_ids, *params),
        ):
            by[str(key_id)].append(tuple(rest))
        return {
            k: await self._burn("key_id=?", (k,), since, until, slots) for k, slots in by.items()
        }

    async def burn_sums_of_keys(
        self, key_ids: Sequence[str], since: float, until: float, half_life_s: float
    ) -> dict[str, BurnSums]:
        """What :meth:`burn_events_of_keys` returns, summed in SQL (:class:`BurnSums`, each
        event weighted by ``e^(-λ·(until - t))``): a few rows come back instead of ~700
        slot events and the current slot's rows per key. The same events are read: a key's
        rows one by one while its look-back holds at most :data:`BURN_RAW_MAX` attempts,
        else one event per slot at the slot's end and the current slot's rows."""
        if not key_ids:
            return {}
        horizon = await self.horizon()
        kept = since if horizon is None else max(since, horizon)  # rows exist from here on
        marks = ", ".join("?" for _ in key_ids)
        where, params = span(f"key_id IN ({marks})", _down(kept, SLOT_S), until, column="slot")
        attempts = {
            str(k): int(n)
            for k, n in await self.fetch(
                f"SELECT key_id, SUM(attempts) FROM ledger_key_slots WHERE {where} GROUP BY key_id",
                (*key_ids, *params),
            )
        }
        by_start: dict[float, list[str]] = {}
        for k in key_ids:
            raw_from = kept
            if attempts.get(k, 0) > BURN_RAW_MAX:
                raw_from = max(kept, _down(until, SLOT_S))
            by_start.setdefault(raw_from, []).append(k)
        use = "(total_tokens>0 OR requests>0 OR cost_usd>0)"
        parts: list[str] = []
        out: list[Any] = []
        for raw_from, keys in by_start.items():
            mine = f"key_id IN ({', '.join('?' for _ in keys)})"
            raw: list[tuple[float | None, float | None]] = [(raw_from, until)]
            if raw_from > since:
                spans = await self._plan(since, raw_from, days=False)
                raw += spans.raw
                for lo, hi in spans.slots:
                    w, p = span(f"{mine} AND {use}", lo, hi, column="slot")
                    parts.append(
                        f"SELECT key_id, slot + {SLOT_S:g} AS t, total_tokens AS tok, "
                        f"requests AS req, cost_usd AS cost FROM ledger_key_slots WHERE {w}"
                    )
                    out += [*keys, *p]
            for lo, hi in raw:
                w, p = span(f"{mine} AND status!='pending' AND {use}", lo, hi)
                parts.append(
                    "SELECT key_id, ts AS t, total_tokens AS tok, requests AS req, "
                    f"cost_usd AS cost FROM ledger WHERE {w}"
                )
                out += [*keys, *p]
        lam = math.log(2.0) / half_life_s
        weight = "EXP(? * (t - ?))"
        sql = (
            f"SELECT key_id, COUNT(*), MIN(t), MAX(t), SUM(tok * {weight}), "
            f"SUM(req * {weight}), SUM(cost * {weight}) FROM ("
            + " UNION ALL ".join(parts)
            + ") e GROUP BY key_id"
        )
        got = {
            str(k): BurnSums(int(n), float(a), float(z), float(t), float(r), float(c))
            for k, n, a, z, t, r, c in await self.fetch(
                sql, (lam, until, lam, until, lam, until, *out)
            )
        }
        return {k: got.get(k, BurnSums()) for k in key_ids}

    async def _burn(
        self,
        cond: str,
        cparams: tuple[Any, ...],
        since: float,
        until: float,
        slots: list[tuple[Any, ...]],
    ) -> list[tuple[float, Measure]]:
        """A scope's burn events from its slot sums ``(slot, tokens, requests, cost,
        attempts)`` over the span and, where they are few or recent, its rows."""
        horizon = await self.horizon()
        kept = since if horizon is None else max(since, horizon)  # rows exist from here on
        raw_from = kept
        rows_kept = sum(int(row[4]) for row in slots if float(row[0]) >= _down(kept, SLOT_S))
        if rows_kept > BURN_RAW_MAX:
            raw_from = max(kept, _down(until, SLOT_S))
        events: list[tuple[float, Measure]] = []
        raw: list[tuple[float | None, float | None]] = [(raw_from, until)]
        if raw_from > since:
            spans = await self._plan(since, raw_from, days=False)
            raw += spans.raw
            for lo, hi in spans.slots:
                for slot, t, r, c, _n in slots:
                    at = float(slot)
                    m = Measure(float(t), float(r), float(c))
                    inside = (lo is None or at >= lo) and (hi is None or at < hi)
                    if inside and (m.tokens > 0 or m.requests > 0 or m.cost > 0):
                        events.append((at + SLOT_S, m))
        for lo, hi in raw:
            where, params = span(cond, lo, hi)
            sql = (
                f"SELECT ts, total_tokens, requests, cost_usd FROM ledger WHERE {where} "
                "AND status!='pending' AND (total_tokens>0 OR requests>0 OR cost_usd>0) "
                "ORDER BY ts"
            )
            rows = await self.fetch(sql, (*cparams, *params))
            events += [(float(ts), Measure(float(t), float(r), float(c))) for ts, t, r, c in rows]
        events.sort(key=lambda e: e[0])
        return events

    async def probe_results(self, since: float | None = None) -> list[LedgerRow]:
        where, params = span("source='probe' AND status!='pending'", since, None)
        sql = (
            f"SELECT {COLUMNS} FROM ledger WHERE id IN (SELECT MAX(id) FROM ledger "
            f"WHERE {where} GROUP BY key_id, model) ORDER BY key_id, model"
        )
        return [row_of(t) for t in await self.fetch(sql, params)]

    # -- compaction ----------------------------------------------------------------------------
    async def compact(self, before: float) -> int:
        """Delete the settled rows older than ``before`` (moved down to a UTC day), which the
        rollups already count, one :data:`COMPACT_CHUNK_S` at a time, off the event loop;
        returns how many rows were deleted. Every total read from the ledger stays what it
        was: usage, cost, estimated-cost rows, limits' windows and request counts (kept per
        slot in ``ledger_outcomes``). What goes: the rows themselves (history, a request's
        attempts, latency samples) and, in compacted time, spans finer than 15 minutes."""
        try:
            return await self._compact(_down(before, DAY_S))
        finally:
            self._horizon = (-math.inf, None)

    @abstractmethod
    async def _compact(self, cutoff: float) -> int:
        """Run :func:`compaction_steps` over every chunk from the oldest row to ``cutoff``."""

    # -- learning: key × model statistics, feedback by request id ------------------------------
    async def request_rows(self, request_id: str) -> list[LedgerRow]:
        """Every attempt of one request, first attempt first."""
        sql = f"SELECT {COLUMNS} FROM ledger WHERE request_id=? ORDER BY attempt, id"
        return [row_of(t) for t in await self.fetch(sql, (request_id,))]

    async def load_model_stats(self) -> list[ModelStats]:
        rows = await self.fetch("SELECT data FROM model_stats ORDER BY key_id, model")
        return [ModelStats.from_record(json.loads(data)) for (data,) in rows]

    async def save_model_stats(self, stats: Sequence[ModelStats], at: float) -> None:
        key = ("key_id", "model")
        futs = [
            self._put(
                "model_stats",
                key,
                key_id=st.key_id,
                model=st.model,
                provider=st.provider,
                updated_at=at,
                data=json.dumps(st.to_record()),
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
}
