"""Every key rate-limited: the first 429 already carries the providers' Retry-After (the
soonest of them) and OpenAI's ``rate_limit_exceeded`` code."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway

pytestmark = pytest.mark.e2e

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
).encode()


def test_the_first_429_carries_retry_after(fresh_fake: Proc, home: Path) -> None:
    for key, wait in ((KEYS[0], 7), (KEYS[1], 12)):
        fault = {"kind": "status", "status": 429, "retry_after": wait, "key": key, "count": 1}
        fake_control(fresh_fake, "/_fake/faults", fault)
    cfg = f"""
settings: {{max_wait_s: 0}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys:
      - {{id: a, secret: {KEYS[0]}, limits: []}}
      - {{id: b, secret: {KEYS[1]}, limits: []}}
"""
    with gateway(cfg, home) as gw:
        req = urllib.request.Request(
            gw.url + "/v1/chat/completions", data=BODY, headers={"content-type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=30)
    err = caught.value
    assert err.code == 429
    assert err.headers["retry-after"] == "7"
    body = json.loads(err.read())
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["type"] == "rate_limit_exceeded"
