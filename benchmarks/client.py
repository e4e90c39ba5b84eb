"""Micro-benchmark: the upstream HTTP client's own CPU per request, in process.

The fake provider runs in its own process (pinned to core 1 where there are two), so what
this process spends is the client's work: write the request, parse the answer, read the
body, pool the connection. Prints µs of CPU (``time.process_time``) per request for each
``--impl`` (``fast``: quotaflow's client, ``aiohttp``: the aiohttp Transport), several runs
interleaved so a busy machine hurts them alike::

    taskset -c 0 .venv/bin/python benchmarks/client.py --runs 5

Run it with ``PYTHONPATH=<another checkout>/src`` to measure another version of the client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson

BODY = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 16,
    }
)
HEADERS = {"Authorization": "Bearer sk-bench-1", "Content-Type": "application/json"}


def start_fake() -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "quotaflow.fake_provider", "--port", "0", "--key", "sk-bench-1"]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "1", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            url = line.split("listening on", 1)[1].split()[0].rstrip("/")
            return proc, url
    raise SystemExit("the fake provider did not start")


def make(impl: str) -> Any:
    if impl == "aiohttp":
        from quotaflow.httpclient.aiohttp_impl import AiohttpClient

        return AiohttpClient(connect_timeout_s=5)
    from quotaflow.httpclient import HttpClient

    return HttpClient(connect_timeout_s=5)


async def one_run(impl: str, url: str, requests: int, concurrency: int) -> float:
    client = make(impl)
    target = url + "/v1/chat/completions"

    async def worker(n: int) -> None:
        for _ in range(n):
            resp = await client.post(target, HEADERS, BODY, timeout_s=10, whole_body=True)
            await resp.read()
            assert resp.status == 200

    try:
        await asyncio.gather(*(worker(50) for _ in range(concurrency)))  # warm the pool
        per = requests // concurrency
        c0 = time.process_time()
        await asyncio.gather(*(worker(per) for _ in range(concurrency)))
        return (time.process_time() - c0) / (per * concurrency) * 1e6
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--impl", default="fast,aiohttp")
    ap.add_argument("--requests", type=int, default=8000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    fake, url = start_fake()
    found: dict[str, list[float]] = {}
    try:
        for _ in range(args.runs):
            for impl in args.impl.split(","):
                us = asyncio.run(one_run(impl, url, args.requests, args.concurrency))
                found.setdefault(impl, []).append(us)
    finally:
        fake.terminate()
        fake.wait(10)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for impl, values in found.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"{impl}: median {statistics.median(values):.1f} µs CPU/request "
            f"(runs: {runs}; c={args.concurrency}; load average {load:.1f})"
        )


if __name__ == "__main__":
    main()
