"""A key that accepts and never answers costs one time-to-first-byte budget, not the
request: the healthy fallback key answers, for plain calls and streams alike."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "ECHO: ok"}]


def _cfg(fake: Proc, provider_extra: str = "") -> str:
    # A request deadline of 30 s: without a first-byte budget the hung key would use all of it.
    return f"""
settings: {{strategy: priority, request_timeout_s: 30}}
providers:
  - name: openai
    base_url: {fake.url}/v1{provider_extra}
    keys:
      - {{id: hung, secret: {KEYS[0]}, priority: 0, limits: []}}
      - {{id: good, secret: {KEYS[1]}, priority: 1, limits: []}}
"""


def _hang_first_key(fake: Proc) -> None:
    """The first key hangs; the second answers, after 100 ms (what a fallback needs)."""
    fake_control(fake, "/_fake/faults", {"kind": "timeout", "key": KEYS[0], "count": -1})
    fake_control(fake, "/_fake/config", {"latency_ms": 100})


def test_a_hung_key_gives_way_within_the_default_budget(fresh_fake: Proc, home: Path) -> None:
    _hang_first_key(fresh_fake)
    with gateway(_cfg(fresh_fake), home) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=60)
        t0 = time.monotonic()
        out = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        print(f"hung key -> fallback answer in {time.monotonic() - t0:.2f}s (plain)")
        assert out.headers["x-quotaflow-key"] == "good"
        assert out.parse().choices[0].message.content == "ok"
    fake_control(fresh_fake, "/_fake/config", {"latency_ms": 0})
    rows = ledger_rows(home)
    assert [(r["key_id"], r["status"], r["error_kind"]) for r in rows] == [
        ("hung", "error", "timeout"),
        ("good", "ok", None),
    ]
    assert "no first byte within 8s" in rows[0]["detail"]


def test_a_hung_key_gives_way_on_a_stream(fresh_fake: Proc, home: Path) -> None:
    _hang_first_key(fresh_fake)
    with gateway(_cfg(fresh_fake, "\n    ttfb_timeout_s: 2"), home) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=60)
        t0 = time.monotonic()
        out = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in out.parse() if ch.choices)
        print(f"hung key -> fallback answer in {time.monotonic() - t0:.2f}s (stream)")
        assert out.headers["x-quotaflow-key"] == "good"
        assert text == "ok"
    fake_control(fresh_fake, "/_fake/config", {"latency_ms": 0})
    rows = ledger_rows(home)
    assert [(r["key_id"], r["error_kind"]) for r in rows] == [("hung", "timeout"), ("good", None)]


@pytest.mark.parametrize("second", ["", "enabled: false"], ids=["one-key", "other-disabled"])
def test_the_last_candidate_keeps_the_whole_deadline(
    fresh_fake: Proc, home: Path, second: str
) -> None:
    # A slow answer (2 s) past a 1 s first-byte budget: with no other key to fall back to,
    # cutting it would only turn a good answer into a 502.
    fake_control(fresh_fake, "/_fake/config", {"latency_ms": 2000})
    keys = f"      - {{id: slow, secret: {KEYS[0]}, priority: 0, limits: []}}"
    if second:
        keys += f"\n      - {{id: spare, secret: {KEYS[1]}, priority: 1, limits: [], {second}}}"
    cfg = f"""
settings: {{strategy: priority, ttfb_timeout_s: 1}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys:
{keys}
"""
    try:
        with gateway(cfg, home) as gw:
            c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=60)
            out = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert out.choices[0].message.content == "ok"
    finally:
        fake_control(fresh_fake, "/_fake/config", {"latency_ms": 0})
