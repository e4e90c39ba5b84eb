"""A bounded shutdown: SIGTERM lets a short request finish, ends a long stream after
``settings.shutdown_grace_s`` with an SSE error event, bills it, and the server exits 0."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows, wait_for

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]


def _in_flight(url: str) -> int:
    with urllib.request.urlopen(url + "/api/health", timeout=10) as resp:
        return int(json.loads(resp.read())["in_flight"])


def test_sigterm_drains_then_ends_open_streams(fresh_fake: Proc, home: Path) -> None:
    # A 40 s stream: 400 tokens, 100 ms apart.
    fake_control(fresh_fake, "/_fake/config", {"chunk_delay_ms": 100, "completion_tokens": 400})
    cfg = f"""
settings: {{shutdown_grace_s: 2}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: []}}]
"""
    got: list[object] = []
    failure: list[BaseException] = []
    try:
        with gateway(cfg, home) as gw:
            c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=60)

            def consume() -> None:
                try:
                    for chunk in c.chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES, stream=True
                    ):
                        got.append(chunk)
                except openai.APIError as exc:
                    failure.append(exc)

            plain: list[str] = []

            def ask() -> None:
                out = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                plain.append(out.choices[0].finish_reason or "")

            reader = threading.Thread(target=consume)
            reader.start()
            assert wait_for(lambda: len(got) >= 3, timeout=30)
            fake_control(fresh_fake, "/_fake/config", {"latency_ms": 800})
            asker = threading.Thread(target=ask)
            asker.start()
            assert wait_for(lambda: _in_flight(gw.url) >= 1, timeout=30)
            t0 = time.monotonic()
            gw.popen.send_signal(signal.SIGTERM)
            code = gw.popen.wait(60)
            print(f"SIGTERM -> exit in {time.monotonic() - t0:.2f}s (grace 2s)")
            reader.join(30)
            asker.join(30)
            assert code == 0, gw.output
            assert plain == ["stop"], "a request in flight finishes within the grace"
    finally:
        fake_control(
            fresh_fake,
            "/_fake/config",
            {"chunk_delay_ms": 0, "completion_tokens": 16, "latency_ms": 0},
        )
    assert failure and "shutting down" in str(failure[0]), (failure, len(got))
    row, answered = ledger_rows(home)
    assert answered["status"] == "ok"
    assert (row["status"], row["estimated"]) == ("aborted", 1)
    assert 3 <= row["completion_tokens"] < 400
    assert "ended 1 stream(s) still open after the 2s grace" in gw.output
