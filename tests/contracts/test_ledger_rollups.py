"""Rollup-backed reads answer exactly what the ledger rows say, on both backends, and
compaction (settings.ledger_retention_days, ``quotaflow compact``) changes no total."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from quotaflow.engine.pricing import COST_ESTIMATED
from quotaflow.storage.base import SLOT_S, USAGE_GROUPS, BurnSums, LedgerQuery, LedgerRow
from quotaflow.storage.ledgers.sql import plan
from tests.contracts.test_ledger_backends import Backend

DAY = 86400.0
T0 = 1_773_446_400.0  # a UTC midnight
AGENTS = ("bob", "alice", "ci")
KEYS = (("openai", "openai-1"), ("openai", "openai-2"), ("anthropic", "claude-1"))
MODELS = {"openai": ("gpt-4o-mini", "gpt-4o"), "anthropic": ("claude-haiku",)}
STATUSES = ("ok", "ok", "ok", "error", "crashed", "aborted", "refused")


def edge_times(days: int) -> list[float]:
    """Times around every kind of edge: slots, hours, UTC days, and between them."""
    out = []
    for d in range(days):
        day = T0 + d * DAY
        for h in (0, 3, 11, 23):
            for off in (-0.001, 0.0, 0.5, 449.0, 899.999, 900.0, 1799.5):
                out.append(day + h * 3600 + off)
    return out


def rows_for(times: list[float], seed: int = 7) -> list[LedgerRow]:
    rnd = random.Random(seed)
    rows = []
    for i, ts in enumerate(times):
        provider, key = rnd.choice(KEYS)
        status = rnd.choice(STATUSES)
        tokens = 0 if status == "refused" else rnd.randint(1, 900)
        r = LedgerRow(
            request_id=f"r{i // 2}",  # two attempts per request, mostly
            attempt=1 + i % 2,
            ts=ts,
            agent=rnd.choice(AGENTS),
            route=rnd.choice(("smart", "cheap")),
            provider="" if status == "refused" else provider,
            key_id="" if status == "refused" else key,
            model=rnd.choice(MODELS[provider]),
            status=status,
            prompt_tokens=tokens // 3,
            completion_tokens=tokens - tokens // 3,
            total_tokens=tokens,
            requests=0 if status == "refused" else 1,
            cost_usd=0.0 if status == "refused" else round(tokens * 1e-6, 9),
            estimated=rnd.random() < 0.1,
            detail=COST_ESTIMATED if rnd.random() < 0.1 else None,
            source="reported" if rnd.random() < 0.05 else "proxy",
        )
        rows.append(r)
    return rows


async def fill(ledger: Any, rows: list[LedgerRow]) -> None:
    """Half of the rows through begin + finish (a pending row settled: the update path),
    the rest appended settled; one left pending."""
    settled = []
    for i, r in enumerate(rows):
        if i % 2 == 0 and r.status != "refused":
            final = LedgerRow(**{k: getattr(r, k) for k in r.__slots__ if k != "extra"})
            pending = LedgerRow(
                request_id=r.request_id, attempt=r.attempt, ts=r.ts, agent=r.agent,
                route=r.route, provider=r.provider, key_id=r.key_id, model=r.model,
                source=r.source, reserved_tokens=1000,
            )  # fmt: skip
            await ledger.begin(pending)
            final.id = pending.id
            await ledger.finish(final)
        else:
            settled.append(r)
    await ledger.append(settled)
    await ledger.begin(
        LedgerRow(request_id="inflight", attempt=1, ts=T0 + 5, agent="zed", reserved_tokens=9)
    )


def estimated(r: LedgerRow) -> bool:
    return r.status not in ("error", "refused") and (
        r.estimated or (r.detail or "").startswith(COST_ESTIMATED)
    )


def within(r: LedgerRow, since: float | None, until: float | None) -> bool:
    return (since is None or r.ts >= since) and (until is None or r.ts < until)


def ref_usage_by(rows, cols, since, until, agent=None):
    out: dict[tuple[str, ...], list[float]] = {}
    for r in rows:
        if r.status == "refused" or not within(r, since, until):
            continue
        if agent is not None and r.agent != agent:
            continue
        k = tuple(str(getattr(r, c)) for c in cols)
        m = out.setdefault(k, [0.0, 0.0, 0.0])
        m[0] += r.total_tokens
        m[1] += r.requests
        m[2] += r.cost_usd
    return out


def ref_estimated(rows, cols, since, until, agent=None):
    return {
        tuple(str(getattr(r, c)) for c in cols)
        for r in rows
        if r.status != "refused"
        and within(r, since, until)
        and (agent is None or r.agent == agent)
        and estimated(r)
    }


def ref_totals(rows, group, since, until):
    out: dict[str, list[float]] = {}
    for r in rows:
        if r.status == "refused" or not within(r, since, until):
            continue
        if group == "slot":
            g = str(int(r.ts // SLOT_S * SLOT_S))
        elif group == "total":
            g = "total"
        else:
            g = str(getattr(r, {"key": "key_id"}.get(group, group)))
        m = out.setdefault(g, [0] * 8)
        m[0] += 1
        m[1] += r.requests
        m[2] += r.status in ("error", "crashed")
        m[3] += r.prompt_tokens
        m[4] += r.completion_tokens
        m[5] += r.total_tokens
        m[6] += r.cost_usd
        m[7] += estimated(r)
    return out


def assert_measures(got, want) -> None:
    assert set(got) == set(want)
    for k, m in got.items():
        assert (m.tokens, m.requests) == (want[k][0], want[k][1]), k
        assert m.cost == pytest.approx(want[k][2], abs=1e-9), k


def spans() -> list[tuple[float, float | None]]:
    return [
        (T0, None),
        (T0, T0 + 3 * DAY),
        (T0 - 5, T0 + DAY + 0.0005),
        (T0 + 899.999, T0 + 2 * DAY + 900.0),
        (T0 + 3600 * 3 + 0.5, T0 + 3600 * 3 + 899.0),  # inside one slot
        (T0 + DAY - 0.001, T0 + DAY + 0.001),
        (T0 + 1800.0, T0 + DAY * 2 + 3600 * 11 + 449.5),
        (T0 + 0.25, None),
    ]


def test_plan_splits_spans_into_edges_slots_and_days() -> None:
    s = plan(T0 - 10, T0 + 2 * DAY + 905)
    assert s.raw == ((T0 - 10, T0), (T0 + 2 * DAY + 900, T0 + 2 * DAY + 905))
    assert s.days == (T0, T0 + 2 * DAY)
    assert s.slots == ((T0 + 2 * DAY, T0 + 2 * DAY + 900),)
    inside = plan(T0 + 1, T0 + 899)
    assert inside.raw == ((T0 + 1, T0 + 899),) and not inside.slots and inside.days is None
    assert plan(T0 + 1, None, days=False).slots == ((T0 + 900, None),)
    assert plan(T0 + 1, None, horizon=T0 + DAY).raw == ()  # compacted time: whole slots


async def test_rollup_reads_equal_the_ledger_rows_across_edges(backend: Backend) -> None:
    ledger = await backend.open()
    rows = rows_for(edge_times(3))
    await fill(ledger, rows)
    for since, until in spans():
        for cols in ([], ["agent"], ["provider"], ["agent", "provider"], ["key_id", "model"]):
            assert_measures(
                await ledger.usage_by(cols, since, until), ref_usage_by(rows, cols, since, until)
            )
            got = await ledger.estimated_cost_groups(cols, since, until)
            assert got == ref_estimated(rows, cols, since, until)
        assert_measures(
            await ledger.usage_by(["provider"], since, until, agent="bob"),
            ref_usage_by(rows, ["provider"], since, until, agent="bob"),
        )
        for group in USAGE_GROUPS:
            want = ref_totals(rows, group, since, until)
            got = {u.group: u for u in await ledger.usage_totals(group, since, until)}
            assert set(got) == set(want), (group, since, until)
            for g, u in got.items():
                w = want[g]
                assert (u.attempts, u.requests, u.errors) == tuple(w[:3]), (group, g)
                assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == tuple(w[3:6])
                assert u.cost_usd == pytest.approx(w[6], abs=1e-9)
                assert u.estimated_cost == w[7]
    for scope, pick in (
        ("global", lambda r: True),
        ("key:openai-2", lambda r: r.key_id == "openai-2"),
        ("agent:bob", lambda r: r.agent == "bob"),
        ("agent:alice@anthropic", lambda r: r.agent == "alice" and r.provider == "anthropic"),
        ("route:cheap", lambda r: r.route == "cheap"),
        ("provider:openai", lambda r: r.provider == "openai"),
    ):
        for since in (0.0, T0 + 0.5, T0 + DAY - 1, T0 + 900):
            m = await ledger.sum_scope(scope, since)
            want = [r for r in rows if pick(r) and r.ts >= since]
            assert m.tokens == sum(r.total_tokens for r in want), (scope, since)
            assert m.requests == sum(r.requests for r in want)
            assert m.cost == pytest.approx(sum(r.cost_usd for r in want), abs=1e-9)
    assert await ledger.agents_seen(T0 + DAY) == sorted({r.agent for r in rows if r.ts >= T0 + DAY})
    assert "zed" in await ledger.agents_seen(T0)  # only in flight


async def test_existing_ledgers_are_back_filled_when_they_migrate(backend: Backend) -> None:
    """A ledger written before the rollups existed: the migration counts its rows once."""
    ledger = await backend.open()
    rows = rows_for(edge_times(2), seed=3)
    await fill(ledger, rows)
    before = {g: norm(await ledger.usage_totals(g, T0 - 1, None)) for g in USAGE_GROUPS}
    await backend.close(ledger)
    await _forget_rollups(backend)
    again = await backend.open()  # migrates: back-fills from the rows
    for g in USAGE_GROUPS:
        assert norm(await again.usage_totals(g, T0 - 1, None)) == before[g]
    await backend.close(again)
    third = await backend.open()  # SQLite runs its migrations on every open: not twice
    for g in USAGE_GROUPS:
        assert norm(await third.usage_totals(g, T0 - 1, None)) == before[g]


def norm(totals: list[Any]) -> list[Any]:
    """Totals with costs to the nano-dollar (sums in another order differ in the last bit)."""
    return [
        (
            u.group,
            u.attempts,
            u.requests,
            u.errors,
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            round(u.cost_usd, 9),
            u.provider,
            u.estimated_cost,
        )
        for u in totals
    ]


async def _forget_rollups(backend: Backend) -> None:
    """Back to the schema before the rollups (their migration not applied yet)."""
    drop = [
        "DROP TRIGGER IF EXISTS ledger_rollup_insert",
        "DROP TRIGGER IF EXISTS ledger_rollup_settle",
        "DROP TRIGGER IF EXISTS ledger_rollup_unsettle",
        "DROP TRIGGER IF EXISTS ledger_settled_is_final",
        "DROP TABLE ledger_slots",
        "DROP TABLE ledger_days",
        "DROP TABLE ledger_outcomes",
        "DROP TABLE ledger_key_slots",
        "DROP TABLE ledger_meta",
    ]
    if backend.kind == "sqlite":
        import sqlite3

        db = sqlite3.connect(backend.tmp / "quotaflow.db")
        for sql in drop:
            db.execute(sql)
        db.commit()
        db.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(backend.dsn)
        try:
            for sql in drop:
                await conn.execute(
                    sql.replace("_unsettle", "_update") + (" ON ledger" if "TRIGGER" in sql else "")
                )
            await conn.execute("DELETE FROM schema_migrations WHERE version='007_rollups.sql'")
        finally:
            await conn.close()


async def reports(ledger: Any, now: float) -> dict[str, Any]:
    """Every total a report, the dashboard, token usage or a forecast reads."""
    out: dict[str, Any] = {}
    for since, until in ((None, None), (T0, now), (T0 + DAY, T0 + 3 * DAY), (T0 + 3600, None)):
        for g in USAGE_GROUPS:
            out[f"totals/{g}/{since}/{until}"] = [
                (u.group, u.attempts, u.requests, u.errors, u.total_tokens, round(u.cost_usd, 9),
                 u.estimated_cost, u.provider)
                for u in await ledger.usage_totals(g, since, until)
            ]  # fmt: skip
        out[f"requests/{since}/{until}"] = await ledger.request_counts(since, until)
        start = T0 if since is None else since
        for cols in ([], ["agent", "provider"], ["key_id", "model"]):
            by = await ledger.usage_by(cols, start, until)
            out[f"usage/{cols}/{since}/{until}"] = {
                k: (m.tokens, m.requests, round(m.cost, 9)) for k, m in by.items()
            }
            out[f"est/{cols}/{since}/{until}"] = await ledger.estimated_cost_groups(
                cols, start, until
            )
    for day in range(5):
        out[f"day-requests/{day}"] = await ledger.request_counts(
            T0 + day * DAY, T0 + (day + 1) * DAY
        )
    for scope in ("global", "key:openai-1", "agent:bob", "provider:anthropic"):
        m = await ledger.sum_scope(scope, 0.0)
        out[f"scope/{scope}"] = (m.tokens, m.requests, round(m.cost, 9))
        events = await ledger.burn_events(scope, now - 7 * DAY, now)
        out[f"burn/{scope}"] = [(t, m.tokens, m.requests, round(m.cost, 9)) for t, m in events]
    out["agents"] = await ledger.agents_seen(T0 - 1)
    return out


async def test_compaction_keeps_every_total(backend: Backend) -> None:
    ledger = await backend.open()
    # 10 days; a request's two attempts 40 s apart (as attempts go: within its deadline)
    times = sorted(
        T0 + d * DAY + s + o for d in range(10) for s in range(0, 86400, 2637) for o in (0, 40)
    )
    rows = rows_for(times, seed=11)
    probe = LedgerRow(
        request_id="probe-1", attempt=1, ts=T0 + 60, key_id="openai-1", model="gpt-4o",
        provider="openai", status="ok", source="probe",
    )  # fmt: skip
    await fill(ledger, rows)
    await ledger.append([probe])
    now = T0 + 10 * DAY
    before = await reports(ledger, now)
    assert before["requests/None/None"].requests > 0
    # A retention as long as a forecast's look-back (7 days): nothing changes at all.
    deleted = await ledger.compact(now - 7 * DAY)
    assert deleted > len(rows) // 4
    left = await ledger.query(LedgerQuery(limit=100_000, newest_first=False))
    assert min(r.ts for r in left if r.status != "pending" and r.source != "probe") >= T0 + 3 * DAY
    assert [p.request_id for p in await ledger.probe_results()] == ["probe-1"]  # kept
    after = await reports(ledger, now)
    for k, v in before.items():
        assert after[k] == v, k
    assert await ledger.compact(now - 7 * DAY) == 0  # nothing left to fold
    # Shorter: every total stays; a forecast reads compacted days as 15-minute events, the
    # same use in all.
    assert await ledger.compact(now - 2 * DAY) > 0
    after = await reports(ledger, now)
    for k, v in before.items():
        if k.startswith("burn/"):
            assert sum(e[1] for e in after[k]) == sum(e[1] for e in v)
            assert sum(e[2] for e in after[k]) == sum(e[2] for e in v)
            assert sum(e[3] for e in after[k]) == pytest.approx(sum(e[3] for e in v), abs=1e-9)
        else:
            assert after[k] == v, k


def ref_requests(rows: list[LedgerRow], since: float | None, until: float | None) -> tuple:
    by: dict[str, list[LedgerRow]] = {}
    for r in rows:
        if r.source == "proxy" and r.status != "pending":
            by.setdefault(r.request_id, []).append(r)
    out = [0, 0, 0]
    for attempts in by.values():
        if not within(min(attempts, key=lambda r: r.ts), since, until):
            continue
        statuses = {r.status for r in attempts}
        out[0 if "ok" in statuses else 1 if "refused" in statuses else 2] += 1
    return tuple(out)


async def test_request_counts_from_outcome_rollups_equal_the_rows(backend: Backend) -> None:
    ledger = await backend.open()
    times = sorted(T0 + s + o for s in range(0, 2 * 86400, 1337) for o in (0, 40))
    rows = rows_for(times, seed=5)
    await fill(ledger, rows)
    # One request whose failed attempt finishes in the same commit as its refusal is booked
    # (both settle in one batch), and one whose two attempts settle in separate commits.
    first = LedgerRow(request_id="mixed", attempt=1, ts=T0 + 100, agent="bob", key_id="k")
    await ledger.begin(first)
    failed = LedgerRow(**{**{k: getattr(first, k) for k in first.__slots__}, "status": "error"})
    refused = LedgerRow(request_id="mixed", attempt=2, ts=T0 + 101, status="refused")
    import asyncio

    await asyncio.gather(ledger.finish(failed), ledger.append([refused]))
    later = [
        LedgerRow(request_id="late", attempt=1, ts=T0 + 1790, status="error", requests=1),
        LedgerRow(request_id="late", attempt=2, ts=T0 + 1805, status="ok", requests=1),
    ]
    await ledger.append(later[:1])
    await ledger.append(later[1:])
    rows += [failed, refused, *later]
    for since, until in [*spans(), (None, None), (None, T0 + DAY), (T0 + 1800.0, T0 + 1900.0)]:
        got = await ledger.request_counts(since, until)
        assert (got.answered, got.refused, got.failed) == ref_requests(rows, since, until), (
            since,
            until,
        )


async def test_burn_events_of_keys_equal_each_keys_own(backend: Backend) -> None:
    ledger = await backend.open()
    times = sorted(T0 + s for s in range(0, 3 * 86400, 97))  # ~2,700 rows: slots and rows
    rows = rows_for(times, seed=2)
    await fill(ledger, rows)
    now = T0 + 3 * DAY - 1234.5
    keys = [k for _, k in KEYS] + ["no-such-key"]
    together = await ledger.burn_events_of_keys(keys, now - 7 * DAY, now)
    for k in keys:
        assert together[k] == await ledger.burn_events(f"key:{k}", now - 7 * DAY, now), k
    assert together["no-such-key"] == []
    for k in keys:  # the same use as the rows', slot events or not
        mine = [r for r in rows if r.key_id == k and r.ts < now]
        assert sum(m.tokens for _, m in together[k]) == sum(r.total_tokens for r in mine)
        assert sum(m.requests for _, m in together[k]) == sum(r.requests for r in mine)
    assert any(t % SLOT_S == 0 for t, _ in together["openai-1"])  # old use as slots


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


def ref_minutes(rows: list[LedgerRow], since: float, until: float, size: float, newest: int):
    """What ``minute_stats`` answers, from the rows: tokens per provider of settled rows
    (refusals out), and the latencies of answered proxied rows among each bucket's newest
    ``newest`` rows (by id: rows were appended in list order)."""
    out: dict[float, tuple[dict[str, float], list[float]]] = {}
    by: dict[float, list[tuple[int, LedgerRow]]] = {}
    for i, r in enumerate(rows):
        if since <= r.ts < until:
            by.setdefault(math.floor(r.ts / size) * size, []).append((i, r))
    for start, mine in by.items():
        tokens: dict[str, float] = {}
        for _, r in mine:
            if r.status not in ("pending", "refused"):
                tokens[r.provider] = tokens.get(r.provider, 0.0) + r.total_tokens
        newest_rows = [r for _, r in sorted(mine, key=lambda x: -x[0])[:newest]]
        latencies = [
            r.latency_ms
            for r in newest_rows
            if r.status == "ok" and r.source == "proxy" and r.latency_ms is not None
        ]
        out[start] = (tokens, latencies)
    return out


async def test_minute_stats_are_those_of_the_rows(backend: Backend) -> None:
    """Tokens per provider and latency percentiles per minute, aggregated by the store, equal
    what the rows say — rows on minute edges, refusals, pending rows, other sources, and
    buckets holding more rows than the sample (the newest rows count)."""
    ledger = await backend.open()
    rnd = random.Random(4)
    rows = []
    for i in range(600):
        ts = (
            T0
            + rnd.choice((0.0, 59.999, 60.0, 0.5))
            + 60 * rnd.randrange(6)
            + rnd.random() * (i % 3 == 0)
        )
        status = rnd.choice(("ok", "ok", "ok", "error", "refused"))
        provider, key = rnd.choice(KEYS)
        rows.append(
            LedgerRow(
                request_id=f"m{i}", attempt=1, ts=ts, status=status,
                provider="" if status == "refused" else provider, key_id=key,
                source=rnd.choice(("proxy", "proxy", "proxy", "reported")),
                total_tokens=0 if status == "refused" else rnd.randint(1, 500),
                latency_ms=None if rnd.random() < 0.1 else round(rnd.uniform(5, 900), 3),
            )
        )  # fmt: skip
    await ledger.append(rows)
    pending = LedgerRow(request_id="pending", attempt=1, ts=T0 + 61, provider="openai")
    await ledger.begin(pending)  # one of its bucket's newest rows, with no use yet
    rows.append(pending)
    for since, until, newest in (
        (T0, T0 + 360, 500),
        (T0, T0 + 360, 7),  # most buckets hold more rows than that
        (T0 + 60, T0 + 180, 1),
        (T0 + 30, T0 + 200, 40),  # partial buckets at both ends
        (T0 + 400, T0 + 460, 500),  # no rows
    ):
        got = await ledger.minute_stats(since, until, 60.0, newest, (0.5, 0.95))
        want = ref_minutes(rows, since, until, 60.0, newest)
        assert set(got) == set(want), (since, until, newest)
        for start, m in got.items():
            tokens, latencies = want[start]
            assert m.tokens == tokens, (start, newest)
            assert m.samples == len(latencies), (start, newest)
            if latencies:
                assert m.percentiles == (
                    nearest_rank(latencies, 0.5),
                    nearest_rank(latencies, 0.95),
                ), (start, newest)
            else:
                assert m.percentiles == ()
    # however many buckets hold more rows than the sample: four statements in all
    statements = []
    fetch = ledger.fetch

    async def counted(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        statements.append(sql)
        return await fetch(sql, params)

    ledger.fetch = counted
    assert len(await ledger.minute_stats(T0, T0 + 360, 60.0, 1, (0.5, 0.95))) == 6
    assert len(statements) == 4, len(statements)
    ledger.fetch = fetch
    got = await ledger.minute_stats(T0, T0 + 360, 60.0, 500, (0.95, 0.1, 0.5, 0.99))
    want = ref_minutes(rows, T0, T0 + 360, 60.0, 500)
    for start, m in got.items():
        latencies = want[start][1]
        assert m.percentiles == tuple(nearest_rank(latencies, q) for q in (0.95, 0.1, 0.5, 0.99))


async def test_span_totals_equal_each_spans_usage(backend: Backend) -> None:
    ledger = await backend.open()
    rows = rows_for(edge_times(3))
    await fill(ledger, rows)
    chosen = [(a, b) for a, b in spans() if b is not None]
    chosen += [(T0 + d * DAY, T0 + (d + 1) * DAY) for d in range(-1, 4)]
    got = await ledger.span_totals(chosen)
    assert len(got) == len(chosen)
    for (since, until), (m, guessed) in zip(chosen, got, strict=True):
        want = ref_usage_by(rows, [], since, until).get((), [0.0, 0.0, 0.0])
        assert (m.tokens, m.requests) == (want[0], want[1]), (since, until)
        assert m.cost == pytest.approx(want[2], abs=1e-9)
        assert guessed == bool(ref_estimated(rows, [], since, until)), (since, until)
    assert await ledger.span_totals([]) == []


def sums_of(events: list[tuple[float, Any]], now: float, half_life_s: float) -> BurnSums:
    lam = math.log(2.0) / half_life_s
    if not events:
        return BurnSums()
    return BurnSums(
        len(events),
        min(t for t, _ in events),
        max(t for t, _ in events),
        sum(m.tokens * math.exp(-lam * (now - t)) for t, m in events),
        sum(m.requests * math.exp(-lam * (now - t)) for t, m in events),
        sum(m.cost * math.exp(-lam * (now - t)) for t, m in events),
    )


def assert_sums(got: BurnSums, want: BurnSums, what: Any) -> None:
    assert (got.events, got.first, got.last) == (want.events, want.first, want.last), what
    for name in ("tokens", "requests", "cost"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-9, abs=1e-12), (
            what,
            name,
        )


async def test_burn_sums_are_the_burn_events_summed(backend: Backend) -> None:
    """The forecast's inputs summed in SQL equal the events a forecast used to read: keys
    read row by row (few rows), keys read as slots and the current slot (many rows), a
    look-back starting inside a slot, and after compaction (slots only)."""
    ledger = await backend.open()
    times = sorted(T0 + s for s in range(0, 3 * 86400, 31))  # ~2,800 per key: slot events
    rows = rows_for(times, seed=8)
    rows += [
        LedgerRow(request_id=f"few{i}", attempt=1, ts=T0 + DAY + 77.7 * i, key_id="rare",
                  provider="openai", status="ok", total_tokens=10 + i, requests=1,
                  cost_usd=1e-5 * i)
        for i in range(40)
    ]  # fmt: skip
    await fill(ledger, rows)
    keys = [k for _, k in KEYS] + ["rare", "no-such-key"]
    half_life = 6 * 3600.0
    for now, back in ((T0 + 3 * DAY - 1234.5, 7 * DAY), (T0 + 2 * DAY + 450.0, DAY + 17.0)):
        events = await ledger.burn_events_of_keys(keys, now - back, now)
        sums = await ledger.burn_sums_of_keys(keys, now - back, now, half_life)
        assert set(sums) == set(keys)
        for k in keys:
            assert_sums(sums[k], sums_of(events[k], now, half_life), (k, now))
    assert sums["no-such-key"] == BurnSums()
    now = T0 + 3 * DAY - 1234.5
    await ledger.compact(T0 + 2 * DAY)
    events = await ledger.burn_events_of_keys(keys, now - 7 * DAY, now)
    sums = await ledger.burn_sums_of_keys(keys, now - 7 * DAY, now, half_life)
    for k in keys:
        assert_sums(sums[k], sums_of(events[k], now, half_life), (k, "compacted"))
