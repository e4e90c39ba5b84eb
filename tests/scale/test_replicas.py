"""Three replica processes on the machine's Redis and PostgreSQL, behind no balancer but the
test itself: exact quotas under 600 concurrent requests, ``kill -9`` of a replica, and a
Redis restart mid-load (fail closed with 503, then recovery from the ledger)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.e2e.procs import Proc, fake_control, fake_provider, gateway
from tests.scale.services import (
    create_database,
    drop_database,
    drop_prefix,
    own_redis,
    require_postgres,
    require_redis,
    start_redis,
    unique_prefix,
)

pytestmark = [pytest.mark.scale, pytest.mark.e2e]

KEYS = ["sk-scale-alpha-0001", "sk-scale-bravo-0002"]
KEY_QUOTA = 4_000  # tokens a day, per key
BOB_BUDGET = 2_500  # tokens a month
EVE_REQUESTS = 40  # requests a day

CONFIG = """
storage:
  counters: {redis}
  ledger: {pg}
  key_prefix: "{prefix}"
  hold_ttl_s: 30
settings:
  max_wait_s: 0
providers:
  - name: openai
    base_url: {url}/v1
    keys:
      - {{id: a, secret: {k0}, limits: [{{metric: tokens, window: day, amount: {quota}}}]}}
      - {{id: b, secret: {k1}, limits: [{{metric: tokens, window: day, amount: {quota}}}]}}
agents:
  - {{name: bob, budgets: [{{metric: tokens, window: month, amount: {bob}}}]}}
  - {{name: eve, budgets: [{{metric: requests, window: day, amount: {eve}}}]}}
"""


@dataclass
class Cluster:
    config: str
    dsn: str
    homes: list[Path]
    replicas: list[Proc] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]


@pytest.fixture(scope="module")
def fake() -> Iterator[Proc]:
    with fake_provider("openai", *(a for k in KEYS for a in ("--key", k))) as p:
        yield p


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    require_postgres()
    d = await create_database()
    yield d
    await drop_database(d)


@contextlib.contextmanager
def replicas(config: str, tmp: Path, n: int = 3) -> Iterator[list[Proc]]:
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                gateway(config, tmp / f"replica{i}", env={"QUOTAFLOW_MASTER_KEY": "scale-test"})
            )
            for i in range(n)
        ]
        yield procs


def config_for(fake: Proc, redis_url: str, dsn: str, prefix: str) -> str:
    return CONFIG.format(
        redis=redis_url, pg=dsn, prefix=prefix, url=fake.url, k0=KEYS[0], k1=KEYS[1],
        quota=KEY_QUOTA, bob=BOB_BUDGET, eve=EVE_REQUESTS,
    )  # fmt: skip


@dataclass
class Outcome:
    status: int
    request_id: str | None = None
    tokens: int = 0
    error_type: str | None = None


async def chat(session: aiohttp.ClientSession, url: str, agent: str | None) -> Outcome:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 24,
    }
    headers = {"x-quotaflow-agent": agent} if agent else {}
    try:
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
            data: Any = await resp.json(content_type=None)
            if resp.status == 200:
                return Outcome(
                    200, resp.headers["x-quotaflow-request-id"], data["usage"]["total_tokens"]
                )
            return Outcome(resp.status, error_type=(data.get("error") or {}).get("type"))
    except (TimeoutError, aiohttp.ClientError):
        return Outcome(0)  # the replica is gone (kill -9)


async def ledger(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def assert_exact(dsn: str, delivered: list[Outcome]) -> None:
    """Zero overshoot, one committed ``ok`` row per delivered response, tokens equal."""
    rows = await ledger(dsn, "SELECT * FROM ledger WHERE status != 'pending'")
    by_key: dict[str, int] = {}
    bob = eve = 0
    for r in rows:
        by_key[r["key_id"]] = by_key.get(r["key_id"], 0) + r["total_tokens"]
        bob += r["total_tokens"] if r["agent"] == "bob" else 0
        eve += r["requests"] if r["agent"] == "eve" else 0
    assert all(v <= KEY_QUOTA for v in by_key.values()), by_key
    assert bob <= BOB_BUDGET and eve <= EVE_REQUESTS, (bob, eve)
    ok = {r["request_id"]: r for r in rows if r["status"] == "ok"}
    assert sorted(o.request_id or "" for o in delivered) == sorted(ok)
    assert sum(o.tokens for o in delivered) == sum(r["total_tokens"] for r in ok.values())


def check_counters(config: str, home: Path) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "quotaflow.yaml"
    cfg.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "quotaflow", "rebuild-counters", "--check", "--config", str(cfg),
         "--home", str(home)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_three_replicas_share_quotas_exactly(fake, dsn, tmp_path) -> None:
    fake_control(fake, "/_fake/reset")
    fake_control(fake, "/_fake/config", {"latency_ms": 20})
    redis_url, prefix = require_redis(), unique_prefix()
    config = config_for(fake, redis_url, dsn, prefix)
    try:
        with replicas(config, tmp_path) as procs:
            agents = [None, "bob", "eve"]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
                outcomes = await asyncio.gather(*(
                    chat(s, procs[i % 3].url, agents[i % 3]) for i in range(600)
                ))  # fmt: skip
        delivered = [o for o in outcomes if o.status == 200]
        statuses = {o.status for o in outcomes}
        assert statuses <= {200, 429}, statuses
        assert 120 < len(delivered) < 600  # the quotas really bound
        await assert_exact(dsn, delivered)
        # Per limit, the shared counters equal the ledger's sums.
        check = check_counters(config, tmp_path / "checker")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "agree with the ledger" in check.stdout
    finally:
        fake_control(fake, "/_fake/config", {"latency_ms": 0})
        await drop_prefix(redis_url, prefix)


async def load(urls: list[str], stop: asyncio.Event, out: list[Outcome], workers: int = 24) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:

        async def worker(i: int) -> None:
            while not stop.is_set():
                o = await chat(s, urls[i % len(urls)], "bob" if i % 2 else None)
                out.append(o)
                if o.status != 200:
                    await asyncio.sleep(0.02)

        await asyncio.gather(*(worker(i) for i in range(workers)))


async def test_kill_9_of_a_replica_loses_no_delivered_row(fake, dsn, tmp_path) -> None:
    fake_control(fake, "/_fake/reset")
    fake_control(fake, "/_fake/config", {"latency_ms": 30})
    redis_url, prefix = require_redis(), unique_prefix()
    config = config_for(fake, redis_url, dsn, prefix).replace(
        f"amount: {KEY_QUOTA}", "amount: 10000000"
    )
    try:
        with replicas(config, tmp_path) as procs:
            stop, out = asyncio.Event(), []
            task = asyncio.create_task(load([p.url for p in procs], stop, out))
            await asyncio.sleep(1.5)
            procs[1].kill9()
            await asyncio.sleep(1.0)
            stop.set()
            await task
            delivered = [o for o in out if o.status == 200]
            assert len(delivered) > 50 and any(o.status == 0 for o in out)
            rows = await ledger(dsn, "SELECT request_id, status FROM ledger")
            ok = {r["request_id"] for r in rows if r["status"] == "ok"}
            assert [o.request_id for o in delivered if o.request_id not in ok] == []
            # The killed replica comes back under the same data folder (same replica id) and
            # settles the attempts it left pending at their worst case.
            with gateway(config, tmp_path / "replica1", env={"QUOTAFLOW_MASTER_KEY": "scale-test"}):
                pass
            pending = await ledger(dsn, "SELECT replica FROM ledger WHERE status='pending'")
            assert [r for r in pending if r["replica"].endswith("replica1")] == []
    finally:
        fake_control(fake, "/_fake/config", {"latency_ms": 0})
        await drop_prefix(redis_url, prefix)


async def test_redis_restart_fails_closed_then_recovers_from_the_ledger(
    fake, dsn, tmp_path
) -> None:
    fake_control(fake, "/_fake/reset")
    fake_control(fake, "/_fake/config", {"latency_ms": 10})
    with own_redis() as (port, proc):
        config = config_for(fake, f"redis://127.0.0.1:{port}/0", dsn, "qf:")
        with replicas(config, tmp_path, n=2) as procs:
            stop, out = asyncio.Event(), []
            task = asyncio.create_task(load([p.url for p in procs], stop, out, workers=8))
            await asyncio.sleep(1.0)
            killed_at = len(out)
            proc.kill()  # no persistence: every counter is gone
            proc.wait(5)
            await asyncio.sleep(1.0)
            during = len(out)
            proc = start_redis("redis-server", port)
            t_back = time.monotonic()
            for _ in range(150):  # up to 15 s for the replicas to notice and reload
                if any(o.status in (200, 429) for o in out[during:]):
                    break
                await asyncio.sleep(0.1)
            recovered = time.monotonic() - t_back
            for _ in range(300):  # load on until the quotas bind again (slow on a busy machine)
                if any(o.status == 429 for o in out[during:]):
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await task
        proc.kill()
        proc.wait(5)
    fake_control(fake, "/_fake/config", {"latency_ms": 0})
    outage = out[killed_at:during]
    before = sum(1 for o in out[:killed_at] if o.status == 200)
    assert before > 20
    assert any(o.status == 503 and o.error_type == "service_unavailable" for o in outage)
    # Requests decided before Redis went away may still finish (200, or 429 when the quota was
    # already full then); anything decided during the outage is a 503; nothing else.
    assert {o.status for o in outage} <= {200, 429, 503}
    assert sum(o.status == 503 for o in outage) > len(outage) // 2
    assert recovered < 15, "the replicas did not recover after Redis came back"
    assert any(o.status == 429 for o in out[during:]), "the quotas never bound after recovery"
    delivered = [o for o in out if o.status == 200]
    await assert_exact(dsn, delivered)
