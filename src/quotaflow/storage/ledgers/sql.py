"""What both SQL ledgers share (written with ``?`` placeholders; the PostgreSQL ledger
converts them): which rows a limit scope counts, a time span, group labels, and the
:class:`SqlLedger` base with every query the two run alike."""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from quotaflow.engine.pricing import COST_ESTIMATED
from quotaflow.engine.stats import ModelStats
from quotaflow.storage.base import (
    REQUEST_SPREAD_S,
    USAGE_GROUPS,
    LedgerQuery,
    LedgerRow,
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


def _usage_where(
    group: Sequence[str], since: float, until: float | None, agent: str | None
) -> tuple[list[str], str, list[Any]]:
    """The columns, condition and parameters of a ``usage_by``-style query."""
    cols = [c for c in group if c in ("agent", "provider", "key_id", "model")]
    if len(cols) != len(group):
        raise ValueError(f"cannot group usage by {list(group)}")
    where = "ts>=? AND status NOT IN ('pending','refused')"  # a refusal used nothing
    params: list[Any] = [since]
    if until is not None:
        where += " AND ts<?"
        params.append(until)
    if agent is not None:
        where += " AND agent=?"
        params.append(agent)
    return cols, where, params


def group_text(value: Any) -> str:
    """A group's label: a time slot (a whole float) without its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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

    async def _since(self, scope: str, since: float) -> float:
        rows = await self.fetch("SELECT MAX(at) FROM resets WHERE scope=?", (scope,))
        last = rows[0][0] if rows else None
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

    async def save_agent(self, name: str, key_hash: str, spec_json: str, at: float) -> None:
        sql = self._upsert("agents", ("name", "key_hash", "spec_json", "created_at"), ("name",))
        await self._changed(sql, (name, key_hash, spec_json, at))

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
        cols, where, params = _usage_where(group, since, until, agent)
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

    async def estimated_cost_groups(
        self,
        group: Sequence[str],
        since: float,
        until: float | None = None,
        agent: str | None = None,
    ) -> set[tuple[str, ...]]:
        cols, where, params = _usage_where(group, since, until, agent)
        select = ", ".join(cols) if cols else "''"
        sql = f"SELECT DISTINCT {select} FROM ledger WHERE {where} AND {ESTIMATED_COST}"
        return {
            tuple(str(v) for v in row[: len(cols)]) for row in await self.fetch(sql, tuple(params))
        }

    async def agents_seen(self, since: float) -> list[str]:
        rows = await self.fetch("SELECT DISTINCT agent FROM ledger WHERE ts>=?", (since,))
        return sorted(str(r[0]) for r in rows)

    # -- reports -----------------------------------------------------------------------------
    async def usage_totals(
        self, group: str, since: float | None = None, until: float | None = None
    ) -> list[UsageTotals]:
        if group not in USAGE_GROUPS:
            raise ValueError(f"unknown grouping {group!r} (use one of {', '.join(USAGE_GROUPS)})")
        column = self.SLOT_SQL if group == "slot" else _GROUP_COLUMNS[group]
        # a refused request is no attempt: request_counts() counts it
        where, params = span("status NOT IN ('pending','refused')", since, until)
        sql = (
            f"SELECT {column} AS g, COUNT(*), COALESCE(SUM(requests),0), "
            "COALESCE(SUM(CASE WHEN status IN ('error','crashed') THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), "
            "COALESCE(SUM(total_tokens),0), COALESCE(SUM(cost_usd),0), MAX(provider), "
            f"COALESCE(SUM(CASE WHEN {ESTIMATED_COST} THEN 1 ELSE 0 END),0) "
            f"FROM ledger WHERE {where} GROUP BY g ORDER BY g"
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
        # A request belongs where its first attempt began; its later attempts are read up to
        # REQUEST_SPREAD_S after ``until`` so that it is counted once, by how it ended.
        where, params = span(
            "source='proxy' AND status!='pending'",
            since,
            None if until is None else until + REQUEST_SPREAD_S,
        )
        first, first_params = span("1=1", since, until, column="MIN(ts)")
        sql = (
            "SELECT outcome, COUNT(*) FROM (SELECT request_id, CASE "
            "WHEN SUM(CASE WHEN status='ok' THEN 1 ELSE 0 END)>0 THEN 'answered' "
            "WHEN SUM(CASE WHEN status='refused' THEN 1 ELSE 0 END)>0 THEN 'refused' "
            f"ELSE 'failed' END AS outcome FROM ledger WHERE {where} GROUP BY request_id "
            f"HAVING {first}) o GROUP BY outcome"
        )
        counts = {str(k): int(n) for k, n in await self.fetch(sql, (*params, *first_params))}
        return RequestCounts(
            counts.get("answered", 0), counts.get("refused", 0), counts.get("failed", 0)
        )

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
            f"SELECT {COLUMNS} FROM ledger WHERE id IN (SELECT MAX(id) FROM ledger "
            f"WHERE {where} GROUP BY key_id, model) ORDER BY key_id, model"
        )
        return [row_of(t) for t in await self.fetch(sql, params)]

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
