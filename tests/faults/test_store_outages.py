"""Every store that stops answering is said once, with what to do, and once when it is back —
not once per request: the shared counters and key health (Redis) and the ledger (PostgreSQL),
cut and restored under a real server process. (The SQLite ledger's full disk:
test_disk_full.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, chat_status, gateway, wait_for
from tests.faults.cuttable import cuttable
from tests.scale.services import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT

pytestmark = [pytest.mark.e2e, pytest.mark.scale]


def said(output: str, event: str) -> list[str]:
    """The subjects of the ``event`` lines, in order."""
    return re.findall(rf'event={event} subject=("[^"]*"|\S+)', output)


def test_each_store_outage_is_said_once_with_advice_and_once_when_back(
    fresh_fake: Proc, pg_dsn: str, redis_url_prefix: tuple[str, str], tmp_path: Path
) -> None:
    _, prefix = redis_url_prefix
    database = pg_dsn.rsplit("/", 1)[1]
    with cuttable(REDIS_HOST, REDIS_PORT) as redis, cuttable(PG_HOST, PG_PORT) as pg:
        config = f"""
storage:
  counters: redis://127.0.0.1:{redis.port}/0
  ledger: postgresql://postgres@127.0.0.1:{pg.port}/{database}
  key_prefix: "{prefix}"
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: [{{metric: tokens, window: day, amount: 100000}}]}}]
"""
        env = {"QUOTAFLOW_MASTER_KEY": "outage-test"}
        with gateway(config, tmp_path / "home", env=env) as gw:
            assert chat_status(gw.url) == 200
            redis.cut()
            assert [chat_status(gw.url) for _ in range(5)] == [503] * 5
            assert wait_for(lambda: len(said(gw.output, "store_unreachable")) == 2, timeout=10)
            redis.restore()
            assert wait_for(lambda: chat_status(gw.url) == 200, timeout=30, interval=0.2)
            assert wait_for(lambda: len(said(gw.output, "store_back")) == 2, timeout=10)

            pg.cut()
            answers = [chat_status(gw.url) for _ in range(5)]
            assert set(answers) == {503}, answers
            pg.restore()
            assert wait_for(lambda: chat_status(gw.url) == 200, timeout=30, interval=0.2)
            for _ in range(3):
                assert chat_status(gw.url) == 200
        output = gw.output
    down, back = said(output, "store_unreachable"), said(output, "store_back")
    counters = f'"the shared counters (Redis at 127.0.0.1:{redis.port}/0)"'
    health = '"the shared key health (Redis)"'
    ledger = f'"the ledger (PostgreSQL at 127.0.0.1:{pg.port}/{database})"'
    assert sorted(down) == sorted([counters, health, ledger]), output
    assert sorted(back) == sorted(down), output
    for line in output.splitlines():
        if "event=store_unreachable" in line:
            assert "hint=" in line and "check that" in line, line
    assert "Traceback" not in output, output
