"""kill -9 under load loses no delivered request's usage; pending attempts settle at restart."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows

pytestmark = pytest.mark.e2e

CONFIG = """
providers:
  - name: openai
    base_url: {url}/v1
    keys:
      - {{id: a, secret: {k0}, limits: [{{metric: tokens, window: month, amount: 100000000}}]}}
      - {{id: b, secret: {k1}, limits: [{{metric: tokens, window: month, amount: 100000000}}]}}
"""


def _post(url: str, body: dict) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
        return resp.status, dict(resp.headers)


def test_kill_9_mid_load_loses_no_delivered_row(fresh_fake: Proc, home: Path) -> None:
    fake_control(fresh_fake, "/_fake/config", {"latency_ms": 15})
    cfg = CONFIG.format(url=fresh_fake.url, k0=KEYS[0], k1=KEYS[1])
    delivered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with gateway(cfg, home) as gw:

        def worker() -> None:
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 8,
            }
            while not stop.is_set():
                try:
                    status, headers = _post(gw.url, body)
                except (urllib.error.URLError, ConnectionError, OSError):
                    return
                if status == 200:
                    with lock:
                        delivered.append(headers["x-quotaflow-request-id"])

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        gw.kill9()
        stop.set()
        for t in threads:
            t.join(15)
    fake_control(fresh_fake, "/_fake/config", {"latency_ms": 0})
    assert len(delivered) > 50, "the load did not get going"
    rows = ledger_rows(home)
    by_id = {r["request_id"]: r for r in rows}
    missing = [rid for rid in delivered if rid not in by_id or by_id[rid]["status"] != "ok"]
    assert missing == []
    assert all(by_id[rid]["total_tokens"] > 0 for rid in delivered)

    # At restart, attempts a crash left pending are settled at their reserved worst case.
    pending_before = [r for r in rows if r["status"] == "pending"]
    with gateway(cfg, home) as gw2:
        assert f"settled {len(pending_before)} attempt" in gw2.output or not pending_before
    after = ledger_rows(home)
    assert not [r for r in after if r["status"] == "pending"]
    crashed = [r for r in after if r["status"] == "crashed"]
    assert len(crashed) == len(pending_before)
    assert all(r["total_tokens"] == r["reserved_tokens"] for r in crashed)
