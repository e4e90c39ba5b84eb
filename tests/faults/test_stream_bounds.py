"""Streams have a total bound: a trickling upstream is cut at ``stream_max_s`` (settings or
per provider) with an SSE error event, billed for what was delivered; an HTML page answered
200 to a stream request is recorded as ``malformed``, not ``connection``."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows
from tests.faults.scripted import canned_upstream

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("settings", "provider"),
    [("stream_max_s: 2", ""), ("stream_max_s: 900", "\n    stream_max_s: 2")],
    ids=["settings", "provider"],
)
def test_a_trickling_stream_is_cut_at_stream_max_s(
    fresh_fake: Proc, home: Path, settings: str, provider: str
) -> None:
    # 400 chunks 100 ms apart: a 40 s stream whose every read comes well within timeout_s.
    fake_control(fresh_fake, "/_fake/config", {"chunk_delay_ms": 100, "completion_tokens": 400})
    cfg = f"""
settings: {{{settings}}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1{provider}
    timeout_s: 3
    keys: [{{id: a, secret: {KEYS[0]}, limits: []}}]
"""
    try:
        with gateway(cfg, home) as gw:
            c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=60)
            got = []
            with pytest.raises(openai.APIError, match="ran longer than its 2s limit"):
                for chunk in c.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True
                ):
                    got.append(chunk)
            assert got, "what came before the cut was delivered"
    finally:
        fake_control(fresh_fake, "/_fake/config", {"chunk_delay_ms": 0, "completion_tokens": 16})
    [row] = ledger_rows(home)
    assert (row["status"], row["error_kind"], row["estimated"]) == ("aborted", "timeout", 1)
    assert 1 <= row["completion_tokens"] < 400


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        ("application/json", b'{"choices": [{"delta": {"content": "trunc'),
    ],
    ids=["html", "bare-json"],
)
def test_a_200_that_is_not_an_event_stream_is_malformed(
    fresh_fake: Proc, home: Path, content_type: str, body: bytes
) -> None:
    with canned_upstream(200, content_type, body) as broken_url:
        cfg = f"""
settings: {{strategy: priority}}
providers:
  - name: broken
    protocol: openai
    base_url: {broken_url}
    models: [gpt-4o-mini]
    priority: 0
    keys: [{{id: a, secret: {KEYS[0]}, limits: []}}]
  - name: openai
    base_url: {fresh_fake.url}/v1
    priority: 1
    keys: [{{id: b, secret: {KEYS[1]}, limits: []}}]
"""
        with gateway(cfg, home) as gw:
            c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            stream = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            assert list(stream)
    rows = ledger_rows(home)
    assert [(r["key_id"], r["error_kind"]) for r in rows] == [("a", "malformed"), ("b", None)]
    assert "not an event stream" in rows[0]["detail"]
