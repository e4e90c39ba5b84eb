"""What the server's once-a-second work costs the event loop: the alert check.

Every second ``quotaflow serve`` checks every limit and key for a crossing of an alert level
(``services/alerts.py``), on the event loop: a request that arrives meanwhile waits for it,
so its duration lands in the latency tail (at 700 requests a second, one request in 700
meets it — the p99.9). This builds a configuration of ``--providers`` × ``--keys`` keys with
three limits each and five agents with a daily budget, opens it the way the library and the
CLI do (embedded SQLite in a temporary folder), and prints the CPU time of one check,
averaged over ``--checks``::

    .venv/bin/python benchmarks/periodic.py --keys 10 --keys 100
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from quotaflow.runtime import open_runtime, resolve_config

LIMITS = [
    {"metric": "tokens", "window": "day", "amount": 1_000_000},
    {"metric": "requests", "window": "minute", "amount": 60},
    {"metric": "tokens", "window": "minute", "amount": 30_000},
]


def config(providers: int, keys: int) -> dict[str, object]:
    names = ["openai", "anthropic", "gemini", "groq", "openrouter"][:providers]
    return {
        "providers": [
            {
                "name": p,
                "protocol": {"anthropic": "anthropic", "gemini": "gemini"}.get(p, "openai"),
                "base_url": "http://127.0.0.1:9",
                "models": ["m1", "m2"],
                "keys": [
                    {
                        "id": f"{p}-k{i}",
                        "secret": f"sk-bench-{p}-{i:04d}-xxxxxxxx",
                        "limits": LIMITS,
                    }
                    for i in range(keys)
                ],
            }
            for p in names
        ],
        "agents": [
            {"name": f"agent{i}", "budgets": [{"metric": "cost", "window": "day", "amount": 5}]}
            for i in range(5)
        ],
    }


async def one(providers: int, keys: int, checks: int) -> tuple[float, int]:
    cfg = resolve_config(config(providers, keys))
    with tempfile.TemporaryDirectory() as tmp:
        async with open_runtime(cfg, Path(tmp)) as rt:
            await rt.alerts.check()  # the first check records the levels as they are
            t0 = time.process_time()
            for _ in range(checks):
                await rt.alerts.check()
            spent = time.process_time() - t0
            return spent / checks, len(rt.gateway.all_limits())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--providers", type=int, default=3)
    ap.add_argument("--keys", type=int, action="append", help="keys per provider (repeatable)")
    ap.add_argument("--checks", type=int, default=200)
    args = ap.parse_args()
    print("| keys | limits | CPU per alert check |")
    print("|---:|---:|---:|")
    for keys in args.keys or [10]:
        per, limits = asyncio.run(one(args.providers, keys, args.checks))
        print(f"| {args.providers * keys} | {limits} | {per * 1e6:,.0f} µs |", flush=True)


if __name__ == "__main__":
    main()
