"""100 parallel requests against one agent budget and one key quota: neither is exceeded."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from quotaflow.config.load import load_config
from quotaflow.fake_provider import KeyState, running_fake_provider
from quotaflow.runtime import Runtime, build_gateway
from quotaflow.web.app import create_app

AGENT_KEY = "qf-swarm-concurrency-key-0001"
SECRET = "sk-concurrency-0001"
KEY_QUOTA = 3000
AGENT_BUDGET = 2000


def write_config(tmp: Path, base_url: str) -> Path:
    cfg = tmp / "q.yaml"
    cfg.write_text(f"""
settings: {{max_wait_s: 0.3}}
providers:
  - name: openai
    base_url: {base_url}
    keys: [{{id: k1, secret: {SECRET}, limits: [{{metric: tokens, window: once, amount: {KEY_QUOTA}}}]}}]
agents:
  - name: swarm
    key: {AGENT_KEY}
    budgets: [{{metric: tokens, window: month, amount: {AGENT_BUDGET}}}]
""")
    return cfg


def ledger_sum(home: Path, where: str) -> int:
    db = sqlite3.connect(home / "quotaflow.db")
    try:
        return int(db.execute(f"SELECT COALESCE(SUM(total_tokens),0) FROM ledger WHERE {where}").fetchone()[0])  # fmt: skip
    finally:
        db.close()


async def test_parallel_requests_never_exceed_the_agent_budget_or_the_key_quota(
    tmp_path: Path,
) -> None:
    async with running_fake_provider(protocol="openai", keys={SECRET: KeyState()}) as fake:
        config = load_config(write_config(tmp_path, fake.base_url))
        home = tmp_path / "home"
        gw = build_gateway(config, home)
        mg = Runtime.build(gw, home)
        server = TestServer(create_app(gw, runtime=mg), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:

                async def chat(i: int) -> int:
                    body = {"model": "auto", "messages": [{"role": "user", "content": f"hello {i}"}], "max_tokens": 20}  # fmt: skip
                    async with http.post(
                        server.make_url("/v1/chat/completions"), json=body,
                        headers={"authorization": f"Bearer {AGENT_KEY}"},
                    ) as r:  # fmt: skip
                        await r.read()
                        return r.status

                codes = await asyncio.gather(*(chat(i) for i in range(100)))
                assert set(codes) <= {200, 429}
                assert codes.count(200) >= 10 and codes.count(429) >= 1  # the budget did bind
                agent_used = ledger_sum(home, "agent='swarm'")
                assert 0 < agent_used <= AGENT_BUDGET

                async def choose(_: int) -> dict:
                    async with http.post(
                        server.make_url("/api/choose"), json={"tokens_estimate": 50},
                        headers={"authorization": f"Bearer {mg_token}"},
                    ) as r:  # fmt: skip
                        return await r.json()

                mg_token = mg.new_admin_token
                left = KEY_QUOTA - ledger_sum(home, "key_id='k1'")
                answers = await asyncio.gather(*(choose(i) for i in range(100)))
                won = [a for a in answers if a["success"]]
                assert len(won) == min(100, left // 50)  # exactly what fits, never more
                async with http.get(server.make_url("/api/status")) as r:
                    row = (await r.json())["providers"][0]
                assert row["quota_used"] + row["reserved"] <= KEY_QUOTA
                assert fake.state.config.keys is not None
                assert fake.state.config.keys[SECRET].used_tokens <= KEY_QUOTA
        finally:
            await server.close()
