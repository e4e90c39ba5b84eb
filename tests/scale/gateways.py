"""In-process gateways for scale-out tests: a provider stub and a small catalog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.engine.limits import Limit
from quotaflow.gateway import CallContext, Gateway
from quotaflow.storage.counters.redis import RedisCounterStore
from quotaflow.storage.ledgers.postgres import PostgresLedger
from quotaflow.testing import config

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 8,
}
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
)


class _Answer:
    status = 200
    complete = True

    def __init__(self) -> None:
        self.headers = CIMultiDictProxy(CIMultiDict({"content-type": "application/json"}))

    async def read(self, timeout_s: float | None = None) -> bytes:
        return ANSWER

    async def readany(self, timeout_s: float | None = None) -> bytes:
        return ANSWER

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class Upstream:
    """A provider that answers every call after a few turns of the loop, noting which key."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def post(self, url: str, headers: Any, body: bytes, **_: Any) -> _Answer:
        self.keys.append(str(headers.get("authorization", "")).removeprefix("Bearer "))
        for _ in range(3):  # other requests run meanwhile
            await asyncio.sleep(0)
        return _Answer()

    async def close(self) -> None:
        pass


def make_config(keys: list[dict[str, Any]]) -> Config:
    return config(
        {
            "settings": {"strategy": "priority", "preferred_providers": [], "max_wait_s": 0},
            "providers": [
                {
                    "name": "p",
                    "protocol": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "models": ["m"],
                    "keys": keys,
                }
            ],
        }
    )


def key(i: int, *limits: tuple[str, str, float]) -> dict[str, Any]:
    return {
        "id": f"k{i}",
        "secret": f"sk-view-{i}-000000000",
        "priority": i,
        "limits": [{"metric": m, "window": w, "amount": a} for m, w, a in limits],
    }


@asynccontextmanager
async def replicas(
    redis_url_prefix: tuple[str, str],
    pg_dsn: str,
    cfg: Config,
    clock: Clock,
    n: int = 2,
) -> AsyncIterator[list[tuple[Gateway, Upstream, RedisCounterStore]]]:
    url, prefix = redis_url_prefix
    async with AsyncExitStack() as stack:
        out = []
        for i in range(n):
            store = RedisCounterStore(url, cfg.tz, prefix=prefix, clock=clock)
            up = Upstream()
            ledger = PostgresLedger(pg_dsn, replica_id=f"view-{i}", clock=clock)
            gw = Gateway(cfg, ledger=ledger, counters=store, clock=clock, http=up)  # type: ignore[arg-type]
            await gw.start()
            stack.push_async_callback(gw.close)
            out.append((gw, up, store))
        yield out


async def chat(gw: Gateway) -> str:
    """The key that answered a request."""
    out = await gw.chat(dict(BODY), CallContext())
    return out.key.id


def limits_of(cfg: Config, key_id: str) -> tuple[Limit, ...]:
    return next(k.limits for k in cfg.keys if k.id == key_id)
