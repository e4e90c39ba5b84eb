"""Micro-benchmark: one routing decision over 10 / 100 / 1,000 keys, in process (CPU time).

A decision is what the gateway does before a request goes upstream: snapshot every limit
of the route, build and rank the candidates, reserve the winner atomically, and (here)
settle it. Run: ``.venv/bin/python benchmarks/routing.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from pathlib import Path

from quotaflow.clock import FrozenClock
from quotaflow.config.load import parse_spec, resolve
from quotaflow.gateway import CallContext, Gateway
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.types import Measure


def config_with(n_keys: int, strategy: str) -> object:
    per_provider = max(n_keys // 10, 1)
    providers = []
    for p in range(min(n_keys, 10)):
        keys = [
            {"id": f"p{p}-k{k}", "secret": f"sk-bench-{p}-{k}", "limits": [
                {"metric": "tokens", "window": "day", "amount": 1_000_000},
                {"metric": "requests", "window": "minute", "amount": 10_000},
            ]}
            for k in range(per_provider)
        ]  # fmt: skip
        providers.append(
            {
                "name": f"prov{p}",
                "protocol": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "models": ["m"],
                "keys": keys,
            }
        )
    spec = parse_spec({"settings": {"strategy": strategy}, "providers": providers})
    return resolve(spec, {}, source="bench")


async def bench(n_keys: int, strategy: str, iterations: int) -> float:
    config = config_with(n_keys, strategy)
    gw = Gateway(config, ledger=SqliteLedger(Path("/nonexistent/unused.db")), clock=FrozenClock())  # type: ignore[arg-type]
    req = gw.parse(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hello there, how are you?"}],
            "max_tokens": 64,
        }
    )
    route = gw.resolve_route("m")
    ctx = CallContext()
    facts = gw.facts(req, ctx)
    now = gw.clock.now()
    deployments = list(route.deployments)
    t0 = time.process_time()
    for _ in range(iterations):
        pick = await gw.picker.pick(route, facts, ctx, set(), deployments, float("inf"), False)
        await gw.counters.settle(pick.reservation_id, Measure(40.0, 1.0, 0.0), now)
    return (time.process_time() - t0) / iterations * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strategy", default="headroom")
    ap.add_argument("--keys", default="10,100,1000")
    args = ap.parse_args()
    print(
        f"# routing decision ({args.strategy}), Python {platform.python_version()}, {platform.machine()}"
    )
    print("| keys | µs per decision | decisions/s |")
    print("|---:|---:|---:|")
    for n in (int(x) for x in args.keys.split(",")):
        iterations = max(20_000 // n, 50)
        asyncio.run(bench(n, args.strategy, iterations // 10))  # warm-up
        us = asyncio.run(bench(n, args.strategy, iterations))
        print(f"| {n:,} | {us:,.1f} | {1e6 / us:,.0f} |")


if __name__ == "__main__":
    main()
