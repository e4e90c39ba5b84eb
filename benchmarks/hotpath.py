"""Micro-benchmark: our own CPU per non-streaming chat request, in process.

A :class:`~quotaflow.gateway.Gateway` with the default memory counters and a real SQLite
ledger (WAL, group commit) in a temporary folder serves ``--requests`` chat completions at
``--concurrency`` on uvloop; the provider is a stub HTTP client that answers at once with a
realistic OpenAI ``chat.completion`` and ``x-ratelimit-*`` headers, so what is measured is
the gateway's own work: parse, route, reserve, journal, build the upstream call, parse the
answer, settle, finish the ledger row. Prints the CPU time (``time.process_time``) per
request, split into user and system time; ``--profile`` adds a cProfile top 30 by own time.

Run pinned to one core, several times, and compare medians (a shared machine is noisy)::

    taskset -c 0 .venv/bin/python benchmarks/hotpath.py --runs 5

``--storage scale`` runs the same gateway on Redis counters and a PostgreSQL ledger
(127.0.0.1, a database and a key prefix of its own, dropped at the end) instead: the CPU per
request of this process, i.e. the gateway's side of the scale-out cost. (Redis's and
PostgreSQL's own CPU is not in it; ``benchmarks/scale.py`` adds Redis's.) ``--storage redis``
(Redis counters, SQLite ledger) and ``--storage postgres`` (memory counters, PostgreSQL
ledger) split that cost between the two. For the Redis counters it also prints the script
calls (EVALSHA) per request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from quotaflow.gateway import CallContext, Gateway
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import config

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion",
        "created": 1_735_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! I'm doing well, thank you. How can I help you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 21,
            "completion_tokens": 16,
            "total_tokens": 37,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_0ba0d124f1",
    }
)
HEADERS = CIMultiDictProxy(
    CIMultiDict(
        [
            ("Date", "Tue, 01 Jul 2025 12:00:00 GMT"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(ANSWER))),
            ("Connection", "keep-alive"),
            ("openai-organization", "user-abc123"),
            ("openai-processing-ms", "312"),
            ("openai-version", "2020-10-01"),
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-limit-tokens", "200000"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("x-ratelimit-remaining-tokens", "199950"),
            ("x-ratelimit-reset-requests", "8.64s"),
            ("x-ratelimit-reset-tokens", "15ms"),
            ("x-request-id", "req_0123456789abcdef0123456789abcdef"),
        ]
    )
)
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello there, how are you doing today?"},
    ],
    "max_tokens": 64,
    "temperature": 0.7,
}


class StubResponse:
    """What :class:`quotaflow.httpclient.Response` offers the gateway, answered at once."""

    __slots__ = ("headers", "status")
    complete = True  # the whole body came with the head, as a small answer does

    def __init__(self) -> None:
        self.status = 200
        self.headers = HEADERS

    async def read(self, timeout_s: float | None = None) -> bytes:
        return ANSWER

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class StubHttp:
    """A provider that answers every POST at once (after one trip through the loop)."""

    def __init__(self) -> None:
        self.calls = 0

    async def post(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        timeout_s: float | None,
        whole_body: bool = False,
    ) -> StubResponse:
        self.calls += 1
        await asyncio.sleep(0)  # a real answer arrives on a later turn of the loop
        return StubResponse()

    async def close(self) -> None:
        pass


def bench_config() -> Any:
    limits = [
        {"metric": "tokens", "window": "day", "amount": 1_000_000_000},
        {"metric": "requests", "window": "minute", "amount": 10_000_000},
    ]
    return config(
        {
            "settings": {"strategy": "headroom"},
            "providers": [
                {
                    "name": "openai",
                    "protocol": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "models": ["gpt-4o-mini"],
                    "keys": [
                        {"id": "k1", "secret": "sk-bench-aaaaaaaaaaaaaaaa", "limits": limits},
                        {"id": "k2", "secret": "sk-bench-bbbbbbbbbbbbbbbb", "limits": limits},
                    ],
                }
            ],
        }
    )


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


STORAGES = ("embedded", "scale", "redis", "postgres")


@asynccontextmanager
async def gateway(storage: str) -> AsyncIterator[Gateway]:
    """A started gateway on ``storage`` (one of :data:`STORAGES`), stopped and cleaned up."""
    http = StubHttp()
    cfg = bench_config()
    if storage not in STORAGES:
        raise SystemExit(f"--storage: {storage!r} is not one of {', '.join(STORAGES)}")
    if storage == "embedded":
        with tempfile.TemporaryDirectory() as tmp:
            gw = Gateway(cfg, ledger=SqliteLedger(Path(tmp) / "quotaflow.db"), http=http)  # type: ignore[arg-type]
            await gw.start()
            try:
                yield gw
            finally:
                await gw.close()
        return
    import asyncpg

    from quotaflow.storage.counters.redis import RedisCounterStore
    from quotaflow.storage.ledgers.postgres import PostgresLedger

    db, prefix = f"qf_hot_{uuid.uuid4().hex[:10]}", f"qfhot:{uuid.uuid4().hex[:10]}:"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    counters = (
        None
        if storage == "postgres"
        else RedisCounterStore("redis://127.0.0.1:6379/0", cfg.tz, prefix=prefix)
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger: Any = (
                SqliteLedger(Path(tmp) / "quotaflow.db")
                if storage == "redis"
                else PostgresLedger(f"postgresql://postgres@127.0.0.1:5432/{db}", replica_id="hot")
            )
            gw = Gateway(cfg, ledger=ledger, counters=counters, http=http)  # type: ignore[arg-type]
            await gw.start()
            try:
                yield gw
            finally:
                await gw.close()
    finally:
        import redis.asyncio as aioredis

        r = aioredis.from_url("redis://127.0.0.1:6379/0")
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


async def run(
    n: int, concurrency: int, profile: cProfile.Profile | None, storage: str = "embedded"
) -> tuple[float, float, float]:
    async with gateway(storage) as gw:
        ctx = CallContext()
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                out = await gw.chat(dict(BODY), ctx)
                assert out.usage.total_tokens == 37

        # warm-up: caches, the ledger file, the first windows
        left = min(n // 10, 2_000)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        left = n
        calls0 = getattr(gw.counters, "script_calls", 0)
        if profile is not None:
            profile.enable()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        spent = time.process_time() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if profile is not None:
            profile.disable()
        calls = getattr(gw.counters, "script_calls", 0) - calls0
        if calls:
            print(f"{storage:>8}: {calls / n:.3f} Redis script calls (EVALSHA) per request")
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return spent / n * 1e6, user / n * 1e6, system / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", "-n", type=int, default=20_000)
    ap.add_argument("--concurrency", "-c", type=int, default=16)
    ap.add_argument("--runs", type=int, default=1, help="repeat and print the median")
    ap.add_argument("--profile", action="store_true", help="a cProfile top by own time")
    ap.add_argument("--top", type=int, default=30, help="rows of the profile to print")
    ap.add_argument(
        "--storage",
        default="embedded",
        help="embedded (memory + SQLite), scale (Redis + PostgreSQL), redis (Redis + SQLite), "
        "postgres (memory + PostgreSQL), or several, comma-separated",
    )
    args = ap.parse_args()
    import uvloop

    storages = args.storage.split(",")
    results: dict[str, list[float]] = {s: [] for s in storages}
    for _ in range(args.runs):
        for storage in storages:  # interleaved: a busy machine hurts them alike
            prof = cProfile.Profile() if args.profile else None
            us, user, system = uvloop.run(run(args.requests, args.concurrency, prof, storage))
            results[storage].append(us)
            print(
                f"{storage:>8}: {us:8.1f} µs CPU per request ({user:.1f} user, {system:.1f} system)",
                flush=True,
            )
            if prof is not None:
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    for storage, values in results.items():
        print(
            f"{storage}: median {statistics.median(values):.1f} µs per request over "
            f"{len(values)} runs ({args.requests:,} requests at concurrency {args.concurrency}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f})"
        )
    if "embedded" in results:
        base = statistics.median(results["embedded"])
        for storage, values in results.items():
            if storage != "embedded":
                ratio = statistics.median(values) / base
                print(f"{storage} / embedded CPU per request: ×{ratio:.2f}")


if __name__ == "__main__":
    main()
