"""What a dashboard snapshot reads from a ledger with traffic: few rows come back to Python
(the store aggregates the last hour, the days and the forecast's inputs), in few statements,
and the answers are those of the rows. Rows turned into Python objects on the reading
thread hold the GIL that the event loop needs to answer requests (issue 21: no read path
stalls the loop)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.reports.burn import DEFAULT_HALF_LIFE_S, DEFAULT_LOOKBACK_S, ewma_rate
from quotaflow.reports.collect import collect_forecast
from quotaflow.runtime import Runtime, build_gateway
from quotaflow.storage.base import LedgerRow
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import config
from quotaflow.web.dashboard.series import SeriesCache
from quotaflow.web.dashboard.snapshot import build_snapshot
from tests.web.dashboard.test_handlers import cfg

HOUR_ROWS = 1_200  # the timeline's hour: ~20 a minute
OLDER_ROWS = 2_600  # per key over the week before: a forecast reads it as slots


class Counted:
    """The ledger's reads, counted: statements and rows returned."""

    def __init__(self, ledger: Any) -> None:
        self.statements = 0
        self.rows = 0
        self.biggest = 0
        self.sql: list[str] = []
        self._fetch = ledger.fetch
        ledger.fetch = self.fetch

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        got: list[tuple[Any, ...]] = await self._fetch(sql, params)
        self.statements += 1
        self.sql.append(sql)
        self.rows += len(got)
        self.biggest = max(self.biggest, len(got))
        return got


@pytest.fixture(params=[False, True], ids=["tool", "server"])
async def busy(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Runtime, list[LedgerRow]]]:
    """A ledger with an hour of traffic and a week before it, opened as a tool opens it
    (the last hour read from SQL) and as a server does (from memory)."""
    home = tmp_path / "home"
    gw = build_gateway(config(cfg("http://127.0.0.1:9/v1")), home)
    mg = Runtime.build(gw, home, services=request.param)
    await mg.start()
    now = time.time()
    rnd = random.Random(21)
    rows = []
    keys = (("openai", "openai-1", "gpt-4o-mini"), ("groq", "groq-1", "llama-3.1-8b-instant"))
    times = [now - 3500 * rnd.random() for _ in range(HOUR_ROWS)]
    times += [now - 3600 - 6 * 86400 * rnd.random() for _ in range(OLDER_ROWS * len(keys))]
    for i, ts in enumerate(sorted(times)):
        provider, key, model = keys[i % 2]
        status = rnd.choice(("ok", "ok", "ok", "ok", "error", "refused"))
        rows.append(
            LedgerRow(
                request_id=f"b{i}", attempt=1, ts=ts, agent="default", route="auto",
                provider=provider, key_id=key, model=model, status=status,
                total_tokens=0 if status == "refused" else rnd.randint(10, 900),
                requests=0 if status == "refused" else 1,
                cost_usd=0.0 if status == "refused" else rnd.randint(1, 90) * 1e-6,
                latency_ms=round(rnd.uniform(50, 2000), 2) if status == "ok" else None,
            )
        )  # fmt: skip
    for k in range(0, len(rows), 500):
        await gw.ledger.append(rows[k : k + 500])
    yield mg, rows
    await mg.close()


async def test_a_snapshot_turns_few_rows_into_python_objects(
    busy: tuple[Runtime, list[LedgerRow]],
) -> None:
    mg, _ = busy
    counted = Counted(mg.gateway.ledger)
    await build_snapshot(mg, SeriesCache(mg.gateway, mg.store))
    # the log's 50 rows, a few per minute of the timeline, one per key, per day, per agent
    assert counted.biggest <= 150, counted.biggest
    assert counted.rows <= 400, counted.rows
    assert counted.statements <= 20, counted.statements


async def test_the_snapshot_charts_are_those_of_the_rows(
    busy: tuple[Runtime, list[LedgerRow]],
) -> None:
    mg, rows = busy
    snap = await build_snapshot(mg, SeriesCache(mg.gateway, mg.store))
    timeline = snap["charts"]["timeline"]
    for i, start in enumerate(timeline["starts"]):
        mine = [r for r in rows if start <= r.ts < start + 60]
        for provider in ("openai", "groq"):
            want = sum(r.total_tokens for r in mine if r.provider == provider)
            got = timeline["tokens"].get(provider, [0.0] * 60)[i]
            assert got == want, (start, provider)
        latencies = sorted(r.latency_ms for r in mine if r.latency_ms is not None)
        assert timeline["latency_samples"][i] == len(latencies)
        if latencies:
            p50 = latencies[max(math.ceil(0.5 * len(latencies)), 1) - 1]
            p95 = latencies[max(math.ceil(0.95 * len(latencies)), 1) - 1]
            assert (timeline["latency_p50_ms"][i], timeline["latency_p95_ms"][i]) == (p50, p95)
    for day in snap["charts"]["cost_per_day"]:
        mine = [r for r in rows if day["start"] <= r.ts < day["start"] + 86400]
        assert day["tokens"] == sum(r.total_tokens for r in mine)
        assert day["cost_usd"] == round(sum(r.cost_usd for r in mine), 6)


async def test_the_forecast_rates_are_those_of_the_burn_events(
    busy: tuple[Runtime, list[LedgerRow]],
) -> None:
    """The forecast's rates, from sums the ledger makes, equal the exponentially weighted
    rate of the burn events read one by one."""
    mg, _ = busy
    gw = mg.gateway
    now = time.time()
    f = await collect_forecast(gw, now=now)
    assert f.limits
    for lim in f.limits:
        events = await gw.ledger.burn_events(lim.scope, now - DEFAULT_LOOKBACK_S, now)
        metric = "tokens" if lim.metric == "tokens" else lim.metric
        want = ewma_rate(
            [(t, m.of(metric)) for t, m in events],  # type: ignore[arg-type]
            now,
            half_life_s=DEFAULT_HALF_LIFE_S,
            max_span_s=DEFAULT_LOOKBACK_S,
        )
        assert want.per_hour > 0
        assert lim.rate_per_hour == pytest.approx(want.per_hour, rel=1e-9), lim.scope


async def test_a_server_reads_the_hour_from_memory(
    busy: tuple[Runtime, list[LedgerRow]],
) -> None:
    """The timeline and the requests of the last hour read no ledger row on a server: what
    the first load costs does not grow with the hour's traffic (issue 21, point 3)."""
    mg, rows = busy
    if not mg.services:
        pytest.skip("a tool reads the hour from SQL")
    assert isinstance(mg.gateway.ledger, SqliteLedger)
    assert await mg.gateway.ledger.recent_seeded()
    counted = Counted(mg.gateway.ledger)
    series = SeriesCache(mg.gateway, mg.store)
    now = time.time()
    await series.timeline(now)
    requests = await series.outcomes(now)
    reads_rows = [sql for sql in counted.sql if "FROM ledger " in sql + " "]
    assert reads_rows == []
    mine = [r for r in rows if r.ts >= requests["since"]]
    assert requests["answered"] == sum(r.status == "ok" for r in mine)
    assert requests["refused"] == sum(r.status == "refused" for r in mine)
    assert requests["failed"] == sum(r.status == "error" for r in mine)
