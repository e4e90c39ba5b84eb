"""Health that tells the truth under faults: ``/api/health`` is ``warning`` when some keys
cannot serve and ``critical`` when none can; ``/readyz`` is 503 then and while the shared
store is unreachable; ``/livez`` answers as long as the process does."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DEAD, KEYS
from tests.e2e.procs import Proc, chat_status, gateway, wait_for
from tests.scale.services import own_redis, start_redis

pytestmark = pytest.mark.e2e


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _probe(url: str) -> tuple[str, int, int]:
    """(/api/health status, /readyz HTTP status, /livez HTTP status)."""
    _, health = _get(url + "/api/health")
    return health["status"], _get(url + "/readyz")[0], _get(url + "/livez")[0]


def test_health_counts_invalid_and_depleted_keys(fresh_fake: Proc, home: Path) -> None:
    once = "limits: [{metric: requests, window: once, amount: 1}]"
    cfg = f"""
settings: {{strategy: priority, max_wait_s: 0}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys:
      - {{id: dead, secret: {DEAD}, priority: 0, limits: []}}
      - {{id: a, secret: {KEYS[0]}, priority: 1, {once}}}
      - {{id: b, secret: {KEYS[1]}, priority: 2, {once}}}
"""
    with gateway(cfg, home) as gw:
        assert _probe(gw.url) == ("healthy", 200, 200)
        assert chat_status(gw.url) == 200  # "dead" is rejected (401), "a" serves and is used up
        _, health = _get(gw.url + "/api/health")
        assert (health["status"], health["keys"], health["keys_usable"]) == ("warning", 3, 1)
        assert _get(gw.url + "/readyz")[0] == 200
        assert chat_status(gw.url) == 200  # "b" serves its one request
        assert _probe(gw.url) == ("critical", 503, 200)
        assert chat_status(gw.url) != 200  # what readyz said: nothing can be served


@pytest.mark.scale
def test_readyz_fails_while_redis_is_down(fresh_fake: Proc, pg_dsn: str, tmp_path: Path) -> None:
    with own_redis() as (port, redis):
        cfg = f"""
storage: {{counters: "redis://127.0.0.1:{port}/0", ledger: "{pg_dsn}"}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: [{{metric: tokens, window: day, amount: 100000}}]}}]
"""
        env = {"QUOTAFLOW_MASTER_KEY": "faults-test"}
        with gateway(cfg, tmp_path / "home", env=env) as gw:
            assert _probe(gw.url) == ("healthy", 200, 200)
            redis.kill()
            redis.wait(5)
            assert chat_status(gw.url) == 503
            status, ready = _get(gw.url + "/readyz")
            assert status == 503 and ready["ready"] is False, ready
            assert "unreachable" in ready["message"]
            assert _probe(gw.url) == ("critical", 503, 200)
            redis = start_redis("redis-server", port)
            try:
                t0 = time.monotonic()
                assert wait_for(lambda: _get(gw.url + "/readyz")[0] == 200, timeout=30)
                print(f"ready again {time.monotonic() - t0:.2f}s after Redis came back")
                assert chat_status(gw.url) == 200
            finally:
                redis.kill()
                redis.wait(5)
