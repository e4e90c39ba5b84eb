"""Two replicas on a shared store see the same quota crossing: its webhook is delivered once,
not once per replica (one event id per crossing, one replica delivering each row)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.hooks import until, webhook_receiver
from tests.e2e.procs import Proc, chat_status, fake_provider, gateway

pytestmark = [pytest.mark.scale, pytest.mark.e2e]


@pytest.fixture
def fake() -> Iterator[Proc]:
    with fake_provider("openai", "--key", KEYS[0]) as p:
        yield p


async def test_a_crossing_seen_by_two_replicas_is_delivered_once(
    fake: Proc, pg_dsn: str, redis_url_prefix: tuple[str, str], tmp_path: Path
) -> None:
    redis_url, prefix = redis_url_prefix
    async with webhook_receiver() as hook:
        config = f"""
storage: {{counters: "{redis_url}", ledger: "{pg_dsn}", key_prefix: "{prefix}"}}
settings: {{alert_levels: [0.1]}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: [{{metric: tokens, window: day, amount: 100}}]}}]
notify:
  - {{url: "{hook.url}"}}
"""
        env = {"QUOTAFLOW_MASTER_KEY": "webhook-replicas"}
        with contextlib.ExitStack() as stack:
            replicas = [
                await asyncio.to_thread(
                    stack.enter_context, gateway(config, tmp_path / f"r{i}", env=env)
                )
                for i in range(2)
            ]
            assert await asyncio.to_thread(chat_status, replicas[0].url) == 200  # 12 %
            assert await until(lambda: len(hook.bodies) >= 1, 15)
            await asyncio.sleep(3.0)  # both replicas watch every second; both deliver every second
    assert [b["event"] for b in hook.bodies] == ["threshold"], hook.bodies
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT done_at FROM notify_outbox")
    finally:
        await conn.close()
    assert len(rows) == 1 and rows[0]["done_at"] is not None
