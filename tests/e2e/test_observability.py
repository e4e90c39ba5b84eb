"""What a running server says about itself: the access line in text and JSON, /metrics
matching the ledger after a mixed run, the dashboard's refusals (real ``quotaflow serve``)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows

pytestmark = pytest.mark.e2e

PROMPT_CANARY = "prompt-canary-7c1e"
ACCESS_FIELDS = {
    "request_id",
    "door",
    "agent",
    "route",
    "provider",
    "key",
    "model",
    "status",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "ms",
    "ttfb_ms",
}


def config(fake: Proc) -> str:
    return f"""
settings: {{strategy: priority, max_wait_s: 0, max_attempts: 3}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    models: [{{name: gpt-4o-mini, input: 0.15, output: 0.6}}]
    keys:
      - {{id: k1, secret: {KEYS[0]}, priority: 0, limits: [{{metric: tokens, window: day, amount: 1000000}}]}}
      - {{id: k2, secret: {KEYS[1]}, priority: 1}}
agents:
  - name: tiny
    budgets: [{{metric: tokens, window: day, amount: 1}}]
"""


def post(
    gw: Proc, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(
        gw.url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def chat(stream: bool = False) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "stream": stream,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"say hi {PROMPT_CANARY}"}],
    }


def fault(fake: Proc, status: int, count: int, key: str | None = None) -> None:
    fake_control(
        fake, "/_fake/faults", {"kind": "status", "status": status, "count": count, "key": key}
    )


def mixed_run(fake: Proc, gw: Proc) -> Counter[int]:
    """3 answers, a 429 moved to the next key, 2 streams, a request every key fails, a refusal."""
    statuses: Counter[int] = Counter()
    for _ in range(3):
        statuses[post(gw, chat())[0]] += 1
    fault(fake, 429, 1, KEYS[0])
    statuses[post(gw, chat())[0]] += 1
    for _ in range(2):
        statuses[post(gw, chat(stream=True))[0]] += 1
    fault(fake, 500, 3)
    statuses[post(gw, chat())[0]] += 1
    statuses[post(gw, chat(), {"x-quotaflow-agent": "tiny"})[0]] += 1
    return statuses


def scrape(gw: Proc) -> tuple[str, dict[str, list[Any]]]:
    with urllib.request.urlopen(gw.url + "/metrics", timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/plain")
        text = resp.read().decode()
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    return text, families


def total(samples: list[Any], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def access_lines(gw: Proc) -> list[str]:
    return [line for line in gw.lines if "quotaflow.access" in line]


def test_metrics_match_the_ledger_after_a_mixed_run(fresh_fake: Proc, home: Path) -> None:
    with gateway(config(fresh_fake), home) as gw:
        statuses = mixed_run(fresh_fake, gw)
        assert statuses == {200: 6, 502: 1, 429: 1}
        text, fam = scrape(gw)
    booked = [r for r in ledger_rows(home) if r["source"] == "proxy"]
    rows = [r for r in booked if r["status"] != "refused"]  # a refusal is no attempt
    refused = [r for r in booked if r["status"] == "refused"]
    assert len(refused) == total(fam["quotaflow_refusals"], "quotaflow_refusals_total") == 1
    attempts = fam["quotaflow_attempts"]
    for (key, status), n in Counter((r["key_id"], r["status"]) for r in rows).items():
        assert total(attempts, "quotaflow_attempts_total", key=key, outcome=status) == n
    assert total(attempts, "quotaflow_attempts_total") == len(rows)
    tokens = fam["quotaflow_tokens"]
    for key in ("k1", "k2"):
        mine = [r for r in rows if r["key_id"] == key]
        assert total(tokens, "quotaflow_tokens_total", key=key, type="prompt") == sum(
            r["prompt_tokens"] for r in mine
        )
        assert total(tokens, "quotaflow_tokens_total", key=key, type="completion") == sum(
            r["completion_tokens"] for r in mine
        )
        cost = total(fam["quotaflow_cost_usd"], "quotaflow_cost_usd_total", key=key)
        assert cost == pytest.approx(sum(r["cost_usd"] for r in mine))
    requests = fam["quotaflow_requests"]
    assert total(requests, "quotaflow_requests_total", status_class="2xx") == 6
    assert total(requests, "quotaflow_requests_total", status_class="5xx") == 1
    assert total(requests, "quotaflow_requests_total", status_class="4xx") == 1
    assert total(fam["quotaflow_refusals"], "quotaflow_refusals_total") == 1
    assert total(fam["quotaflow_streams_in_flight"], "quotaflow_streams_in_flight") == 0
    assert any(s.labels.get("key") == "k1" for s in fam["quotaflow_headroom_ratio"])
    assert (
        total(fam["quotaflow_gateway_overhead_seconds"], "quotaflow_gateway_overhead_seconds_count")
        == 8
    )
    for secret in KEYS:
        assert secret not in text
    assert "qf-" not in text  # no request id in a label


def test_one_access_line_per_request_without_secrets_or_prompts(
    fresh_fake: Proc, home: Path
) -> None:
    with gateway(config(fresh_fake), home) as gw:
        mixed_run(fresh_fake, gw)
        deadline = time.monotonic() + 10  # a stream's line follows its last byte
        while time.monotonic() < deadline and len(access_lines(gw)) < 8:
            time.sleep(0.05)
        lines = access_lines(gw)
        output = gw.output
    assert len(lines) == 8
    fields = [
        dict(p.split("=", 1) for p in line.split(" request ", 1)[1].split()) for line in lines
    ]
    assert set(fields[0]) >= ACCESS_FIELDS
    assert [f["status"] for f in fields].count("200") == 6
    fallback = fields[3]
    assert fallback["attempts"] == "2" and fallback["key"] == "k2"
    assert fields[-1]["status"] == "429" and fields[-1]["attempts"] == "0"
    assert fields[-1]["agent"] == "tiny"
    for secret in KEYS:
        assert secret not in output
    assert PROMPT_CANARY not in output


def _access_lines(output: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [r for r in records if r["logger"] == "quotaflow.access"]


def test_json_access_lines(fresh_fake: Proc, home: Path) -> None:
    with gateway(config(fresh_fake), home, "--log-format", "json") as gw:
        assert post(gw, chat())[0] == 200
        assert post(gw, chat(stream=True))[0] == 200
        # A stream's access line is written once its last byte went out, which may be just
        # after the client read it: wait for both lines rather than racing the log.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_access_lines(gw.output)) < 2:
            time.sleep(0.05)
        output = gw.output
    access = _access_lines(output)
    assert len(access) == 2
    assert set(access[0]) >= ACCESS_FIELDS
    assert access[0]["status"] == 200 and access[0]["key"] == "k1"
    assert access[1]["stream"] is True and access[1]["ttfb_ms"] is not None
    for secret in KEYS:
        assert secret not in output
    assert PROMPT_CANARY not in output
