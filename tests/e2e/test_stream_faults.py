"""Streams that break: upstream cut mid-way, client gone mid-way, failure before the first byte."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows, wait_for

pytestmark = pytest.mark.e2e


def _cfg(fake: Proc) -> str:
    return f"""
settings: {{strategy: priority}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys:
      - {{id: a, secret: {KEYS[0]}, priority: 0}}
      - {{id: b, secret: {KEYS[1]}, priority: 1}}
"""


def test_upstream_cut_mid_stream_ends_with_error_not_done(fresh_fake: Proc, home: Path) -> None:
    fake_control(fresh_fake, "/_fake/faults", {"kind": "cut_stream", "after_chunks": 3, "count": 1})
    with gateway(_cfg(fresh_fake), home) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        got = []
        with pytest.raises(openai.APIError, match="upstream stream failed"):
            for ch in c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                got.append(ch)
        assert got, "the chunks before the cut were delivered"
        assert all(ch.choices[0].finish_reason is None for ch in got if ch.choices)
    rows = ledger_rows(home)
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "aborted" and row["estimated"] == 1
    assert row["completion_tokens"] >= 1 and row["prompt_tokens"] > 0


def test_failure_before_first_chunk_falls_back(fresh_fake: Proc, home: Path) -> None:
    fake_control(
        fresh_fake, "/_fake/faults", {"key": KEYS[0], "kind": "status", "status": 503, "count": 1}
    )
    with gateway(_cfg(fresh_fake), home) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        stream = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO: ok"}], stream=True
        )
        assert stream.headers["x-quotaflow-key"] == "b"
        text = "".join(ch.choices[0].delta.content or "" for ch in stream.parse() if ch.choices)
        assert text == "ok"
    assert [(r["key_id"], r["status"]) for r in ledger_rows(home)] == [("a", "error"), ("b", "ok")]


def test_client_disconnect_mid_stream_is_billed_for_what_was_produced(
    fresh_fake: Proc, home: Path
) -> None:
    fake_control(fresh_fake, "/_fake/config", {"chunk_delay_ms": 50, "completion_tokens": 200})
    try:
        with gateway(_cfg(fresh_fake), home) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            body = (
                b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
            )
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while received.count(b"data: ") < 5:
                received += s.recv(65536)
            s.close()
            assert wait_for(
                lambda: [r["status"] for r in ledger_rows(home)] == ["aborted"], timeout=10
            )
            time.sleep(0.1)
    finally:
        fake_control(fresh_fake, "/_fake/config", {"chunk_delay_ms": 0, "completion_tokens": 16})
    row = ledger_rows(home)[0]
    assert row["estimated"] == 1
    assert 4 <= row["completion_tokens"] < 200
    assert "disconnected" in row["detail"]
