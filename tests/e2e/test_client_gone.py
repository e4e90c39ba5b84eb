"""A client that disconnects while its request waits for headroom, through the real server.

One slow provider, an agent whose budget fits one request at a time: the first of a burst
goes upstream, the others wait. Their clients give up long before the first is answered;
none of them is sent upstream after that nor charged to the agent or the key, each gets an
access line saying the client went away, and the budget they waited on is whole again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.procs import fake_control, ledger_rows, wait_for
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e

AGENT_KEY = "qf-gone-agent-key-0001"
BURST = 5
LATENCY_MS = 4000  # the provider's: the burst's clients give up well before the first answer
CLIENT_TIMEOUT_S = 1.5
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 200,
}


def config(fake_url: str) -> str:
    # The agent's 300 tokens a day fit one request of 200 (never clamped below 200) at a time.
    return f"""\
settings: {{max_wait_s: 30, min_completion_tokens: 200}}
providers:
  - name: openai
    base_url: '{fake_url}/v1'
    keys: [{{id: k1, secret: sk-gone-0001, limits: [{{metric: tokens, window: day, amount: 100000}}]}}]
agents:
  - name: bot
    key: {AGENT_KEY}
    budgets: [{{metric: tokens, window: day, amount: 300}}]
"""


async def _burst(url: str) -> list[int | str]:
    """``BURST`` concurrent chats as bot whose clients give up after ``CLIENT_TIMEOUT_S``."""
    headers = {"authorization": f"Bearer {AGENT_KEY}"}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)

    async def one(http: aiohttp.ClientSession) -> int | str:
        try:
            async with http.post(url + "/v1/chat/completions", json=BODY, headers=headers) as r:
                await r.read()
                return r.status
        except TimeoutError:
            return "gave up"

    async with aiohttp.ClientSession(timeout=timeout) as http:
        return await asyncio.gather(*(one(http) for _ in range(BURST)))


def _idle(gw: Served) -> bool:
    status, health = gw.call("GET", "/api/health")
    return status == 200 and health["in_flight"] == 0


def _access_lines(gw: Served) -> list[str]:
    return [line for line in gw.proc.lines if "quotaflow.access" in line]


def test_requests_whose_clients_left_while_waiting_are_not_sent_upstream(tmp_path: Path) -> None:
    with (
        fake_upstream("openai", "--latency-ms", str(LATENCY_MS)) as fake,
        served(config(fake.url), tmp_path / "home") as gw,
    ):
        outcomes = asyncio.run(_burst(gw.url))
        assert outcomes == ["gave up"] * BURST  # every client left before any answer
        # Before: each waiting request went upstream in turn, one per provider latency.
        assert wait_for(lambda: _idle(gw), timeout=120, interval=0.2)
        assert wait_for(lambda: len(_access_lines(gw)) >= BURST, timeout=10)
        sent = fake_control(fake, "/_fake/stats", method="GET")["requests"]
        assert sent <= 1  # only the one already upstream when its client left
        assert [r["status"] for r in ledger_rows(gw.home, "agent = 'bot'")] == ["ok"] * sent
        lines = _access_lines(gw)
        gone = [ln for ln in lines if "status=499" in ln and "error_kind=client_gone" in ln]
        assert len(gone) >= BURST - 1, lines

        # the budget they waited on is whole again (no reservation left behind): it fits
        status, answer = gw.call("POST", "/v1/chat/completions", BODY, token=AGENT_KEY)
        assert status == 200, answer
