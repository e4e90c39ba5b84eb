"""The command-line tools and the library read the deployment's storage: on a PostgreSQL
ledger and Redis counters, ``quotaflow status`` and ``quotaflow report`` (run as a user
would, from a data folder of their own) and ``UsageMonitor`` show what the servers booked
there, not an empty local SQLite file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from quotaflow import UsageMonitor
from tests.e2e.procs import Proc, fake_provider, gateway

pytestmark = [pytest.mark.scale, pytest.mark.e2e]

KEY = "sk-tools-shared-0001"
QUOTA = 50_000

CONFIG = """
storage:
  counters: {redis}
  ledger: {pg}
  key_prefix: "{prefix}"
providers:
  - name: openai
    base_url: {url}/v1
    keys:
      - {{id: a, secret: {key}, limits: [{{metric: tokens, window: day, amount: {quota}}}]}}
"""


@pytest.fixture
def fake() -> Iterator[Proc]:
    with fake_provider("openai", "--key", KEY) as p:
        yield p


@pytest.fixture
def deployment(fake: Proc, pg_dsn: str, redis_url_prefix: tuple[str, str]) -> str:
    """The config of a deployment on its own PostgreSQL database and Redis key prefix."""
    redis_url, prefix = redis_url_prefix
    return CONFIG.format(
        redis=redis_url, pg=pg_dsn, prefix=prefix, url=fake.url, key=KEY, quota=QUOTA
    )


async def chat(url: str, n: int) -> int:
    """``n`` completions through the server; the tokens they used."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    used = 0
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.post(url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200, await r.text()
                used += (await r.json())["usage"]["total_tokens"]
    return used


def tool(home: Path, config: Path, *args: str) -> Any:
    """``quotaflow ARGS --json`` from ``home``: its JSON output."""
    run = subprocess.run(
        [sys.executable, "-m", "quotaflow", *args, "--json", "--config", str(config),
         "--home", str(home)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


async def booked_tokens(config: str) -> int:
    dsn = next(ln.split(": ", 1)[1] for ln in config.splitlines() if "ledger:" in ln)
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT sum(total_tokens) FROM ledger WHERE status='ok'"))
    finally:
        await conn.close()


async def test_status_and_report_read_the_deployments_postgres_ledger(
    deployment: str, tmp_path: Path
) -> None:
    with gateway(deployment, tmp_path / "server") as server:
        used = await chat(server.url, 3)
    assert used > 0 and await booked_tokens(deployment) == used
    operator = tmp_path / "operator"  # another machine's folder: nothing local to read
    operator.mkdir(mode=0o700)
    config = operator / "quotaflow.yaml"
    config.write_text(deployment)

    status = await asyncio.to_thread(tool, operator, config, "status")
    (openai,) = status["providers"]
    assert openai["quota_total"] == QUOTA
    assert openai["quota_used"] == used
    assert openai["remaining"] == QUOTA - used

    report = await asyncio.to_thread(tool, operator, config, "report")
    assert report["totals"]["requests"] == 3
    assert report["totals"]["total_tokens"] == used

    # The library opens the same runtime: the usage monitor reads the same ledger.
    monitor = UsageMonitor(str(config), home=operator)
    library = await asyncio.to_thread(monitor.report)
    assert (library.total.requests, library.total.total_tokens) == (3, used)
    assert not (operator / "quotaflow.db").exists()  # no local ledger was made beside it
