"""Replicas on one host: PROMETHEUS_MULTIPROC_DIR makes /metrics sum every process's values."""

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

WORKER = """
import sys
from quotaflow.observability.metrics import Metrics
m = Metrics()
m.request("openai", "auto", "openai", "k1", "gpt-4o-mini", 200, "")
m.overhead_time("openai", 0.002)
m.flush()
if sys.argv[1] == "render":
    sys.stdout.write(m.render().decode())
"""


def run(mode: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, mode], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_two_processes_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run("write", env)
    text = run("render", env)
    got = {
        (s.name, s.labels.get("le")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert got[("quotaflow_requests_total", None)] == 2
    assert got[("quotaflow_gateway_overhead_seconds_count", None)] == 2
