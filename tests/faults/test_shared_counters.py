"""Shared counters at start: shared counters beside a replica's own SQLite ledger are refused
(a reload from one replica's ledger would be blind to the others' usage), and replicas
started together on an empty Redis wait for whichever one loads the counters."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, start
from tests.scale.services import own_redis

pytestmark = pytest.mark.e2e


def test_shared_counters_with_a_replica_own_ledger_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "quotaflow.yaml"
    cfg.write_text('storage: {counters: "redis://127.0.0.1:6379/0"}\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "quotaflow",
            "serve",
            "--config",
            str(cfg),
            "--port",
            "0",
            "--home",
            str(tmp_path / "home"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "shared counters (Redis) need a shared ledger" in result.stderr
    assert "Traceback" not in result.stderr


def _chat(url: str) -> int:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    }
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


@pytest.mark.scale
def test_replicas_started_together_on_an_empty_redis_all_come_up(
    fresh_fake: Proc, pg_dsn: str, tmp_path: Path
) -> None:
    with own_redis() as (port, _):
        config = f"""
storage: {{counters: "redis://127.0.0.1:{port}/0", ledger: "{pg_dsn}"}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: [{{metric: tokens, window: day, amount: 100000}}]}}]
"""
        homes = [tmp_path / f"replica{i}" for i in range(3)]
        for home in homes:
            home.mkdir()
            (home / "quotaflow.yaml").write_text(config)

        def serve(home: Path) -> Proc:
            return start(
                [
                    "serve",
                    "--config",
                    str(home / "quotaflow.yaml"),
                    "--port",
                    "0",
                    "--home",
                    str(home),
                ],
                ready="serving on",
                env={"QUOTAFLOW_MASTER_KEY": "faults-test"},
                timeout=90,
            )

        with ThreadPoolExecutor(3) as pool:
            started = list(pool.map(lambda h: _try(serve, h), homes))
        procs = [p for p in started if isinstance(p, Proc)]
        try:
            assert len(procs) == 3, [str(p) for p in started if not isinstance(p, Proc)]
            assert [_chat(p.url) for p in procs] == [200, 200, 200]
        finally:
            for p in procs:
                p.stop()


def _try(serve: object, home: Path) -> Proc | Exception:
    try:
        return serve(home)  # type: ignore[operator,no-any-return]
    except Exception as exc:
        return exc
