"""Keys, agents and the admin token shared by replicas through PostgreSQL (issue 8): what one
replica adds or deletes at runtime reaches the others within about a second, and every
replica accepts the one admin token the first of them created."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider
from quotaflow.fake_provider.server import FakeProviderHandle
from quotaflow.runtime import Runtime, build_gateway
from quotaflow.services.access import ADMIN_SETTING
from quotaflow.storage.ledgers.postgres import PostgresLedger
from quotaflow.storage.secrets import MASTER_KEY_ENV
from quotaflow.testing import config
from quotaflow.web.app import create_app
from tests.scale.services import free_port

pytestmark = pytest.mark.scale

BODY: dict[str, Any] = {
    "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
}  # fmt: skip

CALL_TIMEOUT_S = 30.0


def _config(url: str, redis_url: str, prefix: str, dsn: str, replica: str) -> dict[str, Any]:
    return {
        "storage": {"counters": redis_url, "key_prefix": prefix, "ledger": dsn, "replica_id": replica},
        "server": {"require_agent_keys": True},
        "settings": {"strategy": "priority", "max_wait_s": 0, "preferred_providers": []},
        "providers": [{"name": "p", "protocol": "openai", "base_url": url, "models": ["m"], "keys": [
            {"id": "a", "secret": "sk-a", "priority": 0, "limits": []},
        ]}],
    }  # fmt: skip


class Replica:
    def __init__(self, mg: Runtime, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.mg, self.server, self.http = mg, server, http

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {token}"}
        try:  # bounded: a hang fails here, naming the call, not at the suite's timeout
            async with asyncio.timeout(CALL_TIMEOUT_S):
                async with self.http.request(
                    method, self.url(path), json=body, headers=headers
                ) as r:
                    return r.status, await r.json()
        except TimeoutError:
            raise AssertionError(f"{method} {path} not answered in {CALL_TIMEOUT_S:g} s") from None


@contextlib.asynccontextmanager
async def replicas(
    fake: FakeProviderHandle, redis_url: str, prefix: str, dsn: str, tmp: Path
) -> AsyncIterator[tuple[Replica, Replica]]:
    servers: list[TestServer] = []
    mgs: list[Runtime] = []
    for name in ("A", "B"):  # own data folders, one PostgreSQL database and one Redis
        home = tmp / name
        home.mkdir()
        gw = build_gateway(config(_config(fake.base_url, redis_url, prefix, dsn, name)), home)
        mg = Runtime.build(gw, home)
        mgs.append(mg)
        servers.append(TestServer(create_app(gw, runtime=mg), host="127.0.0.1"))
    # Started together: both race to create the admin token.
    await asyncio.gather(*(s.start_server() for s in servers))
    try:
        async with aiohttp.ClientSession() as http:
            yield Replica(mgs[0], servers[0], http), Replica(mgs[1], servers[1], http)
    finally:
        for s in servers:
            await s.close()


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 2.0) -> float:
    """Seconds until ``check()`` holds; fails after ``within_s``."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not await check():
        assert loop.time() - t0 < within_s, "not propagated in time"
        await asyncio.sleep(0.05)
    return loop.time() - t0


def sent(fake: FakeProviderHandle, secret: str) -> int:
    keys = fake.state.config.keys
    assert keys is not None
    return keys[secret].requests


async def test_agents_keys_and_admin_token_are_shared(
    redis_url_prefix: tuple[str, str], pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "shared-master-key-of-this-test")
    redis_url, prefix = redis_url_prefix
    fake_cfg = FakeProviderConfig(
        protocol="openai", keys={"sk-a": KeyState(), "sk-new": KeyState()}
    )
    async with (
        running_fake_provider(fake_cfg) as fake,
        replicas(fake, redis_url, prefix, pg_dsn, tmp_path) as (a, b),
    ):
        # One admin token, created by exactly one of the two replicas started together.
        tokens = [t for t in (a.mg.new_admin_token, b.mg.new_admin_token) if t is not None]
        assert len(tokens) == 1
        token = tokens[0]
        assert a.mg.admin_hash == b.mg.admin_hash
        assert await a.mg.store.get_setting(ADMIN_SETTING) == a.mg.admin_hash
        for r in (a, b):
            status, _ = await r.call("GET", "/api/agents", token)
            assert status == 200
            status, _ = await r.call("GET", "/api/agents", "qf-admin-wrong")
            assert status in (401, 403)

        # An agent created on A is accepted by B within 2 s; unknown before.
        status, out = await a.call("POST", "/api/agents", token, {"name": "bot"})
        assert status == 201, out
        agent_key = out["api_key"]

        async def b_accepts() -> bool:
            return (await b.call("POST", "/v1/chat/completions", agent_key, BODY))[0] == 200

        assert await eventually(b_accepts) < 2.0

        # A key added on A is routed to by B (the configured key disabled, on every replica).
        status, out = await a.call(
            "POST",
            "/api/add_key",
            token,
            {"provider": "p", "api_key": "sk-new", "quota_total": 1000},
        )
        assert status == 200 and out["key_id"] == "p-1", out

        async def b_knows_key() -> bool:
            return "p-1" in b.mg.gateway.keys

        await eventually(b_knows_key)
        b.mg.gateway.disable_key("a")
        before = sent(fake, "sk-new")
        status, out = await b.call("POST", "/v1/chat/completions", agent_key, BODY)
        assert status == 200, out
        assert sent(fake, "sk-new") == before + 1

        # A key removed on A is no longer routed to by B.
        assert (await a.call("DELETE", "/api/keys/p-1", token))[0] == 200

        async def b_forgot_key() -> bool:
            return "p-1" not in b.mg.gateway.keys

        await eventually(b_forgot_key)

        # An agent deleted on A is refused by B.
        assert (await a.call("DELETE", "/api/agents/bot", token))[0] == 200

        async def b_refuses() -> bool:
            return (await b.call("POST", "/v1/chat/completions", agent_key, BODY))[0] == 401

        await eventually(b_refuses)
        assert b.mg.agents.get("bot") is None


async def test_a_deleted_keys_id_is_never_given_to_the_next_key(
    redis_url_prefix: tuple[str, str], pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis counters and PostgreSQL: a key added after a deletion starts at zero under an id
    of its own, on every replica, and the deleted key's usage stays under its own id."""
    monkeypatch.setenv(MASTER_KEY_ENV, "shared-master-key-of-this-test")
    redis_url, prefix = redis_url_prefix
    async with (
        running_fake_provider(FakeProviderConfig(protocol="openai")) as fake,
        replicas(fake, redis_url, prefix, pg_dsn, tmp_path) as (a, b),
    ):
        token = a.mg.new_admin_token or b.mg.new_admin_token
        assert token is not None

        async def used(r: Replica, key_id: str) -> float:
            status, out = await r.call("GET", "/api/status", token)
            assert status == 200, out
            keys = [k for p in out["providers"] for k in p["keys"] if k["key_id"] == key_id]
            assert len(keys) == 1, keys
            return float(keys[0]["quota_used"])

        old = {"provider": "p", "api_key": "sk-old-0001", "quota_total": 100}
        status, out = await a.call("POST", "/api/add_key", token, old)
        assert status == 200, out
        old_id = out["key_id"]
        use = {"provider": "p", "key_id": old_id, "tokens_used": 40}
        assert (await a.call("POST", "/api/use", token, use))[0] == 200
        assert await used(a, old_id) == 40
        assert (await a.call("DELETE", f"/api/keys/{old_id}", token))[0] == 200
        new = {"provider": "p", "api_key": "sk-brand-new-0002", "quota_total": 100}
        status, out = await b.call("POST", "/api/add_key", token, new)  # the other replica
        assert status == 200, out
        new_id = out["key_id"]
        assert new_id != old_id

        async def a_knows_key() -> bool:
            return new_id in a.mg.gateway.keys

        await eventually(a_knows_key)
        assert await used(a, new_id) == 0 and await used(b, new_id) == 0
        totals = {t.group: t.total_tokens for t in await a.mg.gateway.ledger.usage_totals("key")}
        assert totals[old_id] == 40 and totals.get(new_id, 0) == 0


async def test_a_restarted_replica_reuses_the_stored_admin_token(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "shared-master-key-of-this-test")
    cfg = {"storage": {"ledger": pg_dsn, "replica_id": "A"}, "providers": [
        {"name": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"],
         "keys": [{"id": "a", "secret": "sk-a"}]},
    ]}  # fmt: skip
    hashes = []
    for home in (tmp_path / "one", tmp_path / "two"):
        gw = build_gateway(config(cfg), home)
        mg = Runtime.build(gw, home)
        await mg.start()
        try:
            hashes.append((mg.admin_hash, mg.new_admin_token))
        finally:
            await mg.close()
    (first, token), (second, again) = hashes
    assert token is not None and again is None and first == second


async def test_an_unreachable_store_never_stops_the_sync(
    pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = {"storage": {"ledger": pg_dsn, "replica_id": "A"}, "providers": [
        {"name": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"],
         "keys": [{"id": "a", "secret": "sk-a"}]},
    ]}  # fmt: skip
    gw = build_gateway(config(cfg), tmp_path)
    mg = Runtime.build(gw, tmp_path)
    await mg.start()
    try:
        assert mg._sync_task is not None and mg.sync is not None
        ledger = gw.ledger
        assert isinstance(ledger, PostgresLedger)
        # Point the store at a port where nothing listens: every poll fails.
        dead = PostgresLedger(f"postgresql://postgres@127.0.0.1:{free_port()}/x", replica_id="A")
        mg.sync.store = dead
        with caplog.at_level(logging.WARNING, logger="quotaflow.services.sync"):
            await asyncio.sleep(2.3)
        assert not mg._sync_task.done()  # retrying, not crashed
        assert sum("cannot sync" in r.getMessage() for r in caplog.records) == 1  # logged once
        mg.sync.store = ledger
        await ledger.add_agent("late", "h-late", '{"name": "late"}', 0.0)
        await eventually(lambda: _has(mg, "late"))
    finally:
        await mg.close()


async def _has(mg: Runtime, name: str) -> bool:
    return mg.agents.get(name) is not None
