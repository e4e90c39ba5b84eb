"""Key health shared by replicas through Redis (issue 8): a key disabled, cooled down or
re-enabled on one replica is so on the others within about a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from quotaflow.clock import SystemClock
from quotaflow.engine import health as hl
from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider
from quotaflow.fake_provider.faults import Fault
from quotaflow.fake_provider.server import FakeProviderHandle
from quotaflow.gateway import Gateway
from quotaflow.gateway.health_sync import HealthSync
from quotaflow.runtime import build_gateway
from quotaflow.storage.health.redis import RedisHealthStore
from quotaflow.testing import config
from tests.scale.services import free_port

pytestmark = pytest.mark.scale

BODY: dict[str, Any] = {
    "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
}  # fmt: skip


def _config(url: str, redis_url: str, prefix: str, dsn: str) -> dict[str, Any]:
    return {
        "storage": {"counters": redis_url, "key_prefix": prefix, "ledger": dsn},
        "settings": {"strategy": "priority", "max_wait_s": 0, "preferred_providers": []},
        "providers": [{"name": "p", "protocol": "openai", "base_url": url, "models": ["m"], "keys": [
            {"id": "a", "secret": "sk-a", "priority": 0, "limits": []},
            {"id": "b", "secret": "sk-b", "priority": 1, "limits": []},
        ]}],
    }  # fmt: skip


@contextlib.asynccontextmanager
async def replicas(
    fake: FakeProviderHandle, redis_url: str, prefix: str, dsn: str, tmp: Path
) -> AsyncIterator[tuple[Gateway, Gateway]]:
    cfg = _config(fake.base_url, redis_url, prefix, dsn)
    gws = []
    for name in ("A", "B"):  # shared counters need a shared ledger
        (tmp / name).mkdir()
        gws.append(
            build_gateway(
                config({**cfg, "storage": {**cfg["storage"], "replica_id": name}}), tmp / name
            )
        )
    for gw in gws:
        await gw.start()
    try:
        yield gws[0], gws[1]
    finally:
        for gw in gws:
            await gw.close()


async def eventually(check: Callable[[], bool], within_s: float = 2.0) -> float:
    """Seconds until ``check()`` holds; fails after ``within_s``."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not check():
        assert loop.time() - t0 < within_s, "not propagated in time"
        await asyncio.sleep(0.02)
    return loop.time() - t0


def sent(fake: FakeProviderHandle, secret: str) -> int:
    keys = fake.state.config.keys
    assert keys is not None
    return keys[secret].requests


async def test_disable_cooldown_and_enable_reach_the_other_replica(
    redis_url_prefix: tuple[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    redis_url, prefix = redis_url_prefix
    fake_cfg = FakeProviderConfig(protocol="openai", keys={"sk-a": KeyState(), "sk-b": KeyState()})
    async with (
        running_fake_provider(fake_cfg) as fake,
        replicas(fake, redis_url, prefix, pg_dsn, tmp_path) as (a, b),
    ):
        assert a.health_sync is not None and b.health_sync is not None
        # A 401 on replica A disables key "a" there…
        fake.state.faults.add(Fault(kind="status", key="sk-a", status=401))
        out = await a.chat(dict(BODY))
        assert [(t.key_id, t.outcome) for t in out.attempts] == [("a", "error"), ("b", "ok")]
        assert a.health["a"].disabled_reason
        # …and on replica B, which then sends nothing to it.
        await eventually(lambda: bool(b.health["a"].disabled_reason))
        before = sent(fake, "sk-a")
        out = await b.chat(dict(BODY))
        assert (out.key.id, len(out.attempts)) == ("b", 1)
        assert sent(fake, "sk-a") == before

        # An operator's enable on A re-enables it on B.
        a.enable_key("a")
        await eventually(lambda: b.health["a"].disabled_reason is None)
        assert (await b.chat(dict(BODY))).key.id == "a"

        # A 429 "retry after 30 s" on A cools the key down on B too.
        fake.state.faults.add(Fault(kind="status", key="sk-a", status=429, retry_after=30))
        out = await a.chat(dict(BODY))
        assert [t.key_id for t in out.attempts] == ["a", "b"]
        now = SystemClock().now()
        await eventually(lambda: b.health["a"].cooldown_until > now + 25)
        assert hl.unavailable_reason(b.health["a"], now) is not None
        before = sent(fake, "sk-a")
        out = await b.chat(dict(BODY))
        assert (out.key.id, len(out.attempts)) == ("b", 1)
        assert sent(fake, "sk-a") == before

        # Enabling on B (the replica that only heard of it) clears it on A as well.
        b.enable_key("a")
        await eventually(lambda: a.health["a"].cooldown_until == 0.0)
        assert (await a.chat(dict(BODY))).key.id == "a"
        # A block B learnt from A is not echoed back after the enable.
        await asyncio.sleep(0.6)
        assert a.health["a"].cooldown_until == 0.0 and b.health["a"].cooldown_until == 0.0


async def test_an_unreachable_redis_never_breaks_the_replica() -> None:
    store = RedisHealthStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    health = {"a": hl.Health()}
    sync = HealthSync(store, health, SystemClock(), interval_s=0.05, retry_s=0.05)
    sync.start()
    health["a"].disabled_reason = "auth: bad key"
    sync.notify("a")
    await asyncio.sleep(0.3)
    assert sync._task is not None and not sync._task.done()  # retrying, not crashed
    assert health["a"].disabled_reason == "auth: bad key"
    await sync.close()
