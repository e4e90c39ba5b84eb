"""An agent whose own budget is spent is refused on every door with a Retry-After of when
its budget frees, not of when a key does (through the real server and the fake provider).

Keys alpha (its own hourly request limit), bravo (out of quota at the provider: its first
use keeps it out for an hour) and charlie; the agent ``bot1`` has 300 tokens a day."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.procs import Proc, fake_control
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e

KEYS = ["sk-alpha-retry-0001", "sk-bravo-retry-0002", "sk-charlie-retry-0003"]
DAY_S = 86_400
MESSAGES = [{"role": "user", "content": "hi"}]
DOORS: dict[str, tuple[str, dict[str, object], str]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
        "authorization",
    ),
    "messages": (
        "/v1/messages",
        {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
        "x-api-key",
    ),
    "gemini": (
        "/v1beta/models/gpt-4o-mini:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 20}},
        "x-goog-api-key",
    ),
}


def _config(fake: Proc) -> str:
    return f"""settings: {{strategy: priority, max_wait_s: 0}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys:
      - {{id: alpha, secret: {KEYS[0]}, priority: 0, limits: [{{metric: requests, window: hour, amount: 1}}]}}
      - {{id: bravo, secret: {KEYS[1]}, priority: 1, limits: []}}
      - {{id: charlie, secret: {KEYS[2]}, priority: 2, limits: []}}
"""


def _send(gw: Served, door: str, key: str) -> tuple[int, dict[str, str], object]:
    path, body, header = DOORS[door]
    value = f"Bearer {key}" if header == "authorization" else key
    req = urllib.request.Request(
        gw.url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", header: value},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return (
                resp.status,
                {k.lower(): v for k, v in resp.headers.items()},
                json.loads(resp.read()),
            )
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(err.read())


def _to_midnight(at: float) -> float:
    return DAY_S - at % DAY_S  # the agent's day window is UTC's (settings.timezone)


def test_a_spent_agent_budget_is_retried_after_midnight_on_every_door(tmp_path: Path) -> None:
    if _to_midnight(time.time()) < 600:
        pytest.skip("too close to midnight UTC: the agent's day would reset during the test")
    keys = [a for k in KEYS for a in ("--key", k)]
    with fake_upstream("openai", *keys) as fake, served(_config(fake), tmp_path / "home") as gw:
        fake_control(fake, "/_fake/keys", {"key": KEYS[1], "quota_tokens": 1, "used_tokens": 1})
        budget = [{"metric": "tokens", "window": "day", "amount": 300}]
        status, agent = gw.admin("POST", "/api/agents", {"name": "bot1", "budgets": budget})
        assert status == 201, agent
        key = agent["api_key"]
        for _ in range(100):
            status, headers, body = _send(gw, "chat", key)
            if status != 200:
                break
        assert status == 429, body
        for door in DOORS:
            before = time.time()
            status, headers, body = _send(gw, door, key)
            after = time.time()
            assert status == 429, (door, body)
            wait = int(headers["retry-after"])
            # midnight, not bravo's hour nor alpha's: the agent's budget binds on every key
            assert _to_midnight(after) <= wait <= _to_midnight(before) + 1, (door, wait)
            assert "agent bot1's budget agent:bot1/tokens/day" in str(body), door
