"""Scale-out benchmark: one replica on Redis + PostgreSQL versus the embedded default.

Same layout as ``benchmarks/load.py`` (gateway pinned to core 0; fake provider and wrk on
core 1; Redis and PostgreSQL wherever the OS puts them). For each storage and concurrency it
prints throughput, latency p50/p99, the gateway's CPU time per request and (scale-out) the
Redis server's CPU time per request. Every request is routed, reserved on the key's limits,
journaled and finalized in the ledger before its response is released.

Run: ``.venv/bin/python benchmarks/scale.py`` (needs ``wrk``, Redis on 127.0.0.1:6379 and
PostgreSQL on 127.0.0.1:5432 with the ``postgres`` user; a database ``qf_bench_*`` and a
Redis key prefix are created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load as bench

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _redis_pid_and_drop(prefix: str | None) -> int:
    import redis.asyncio as aioredis

    r = aioredis.from_url("redis://127.0.0.1:6379/0")
    try:
        if prefix:
            keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await r.delete(*keys)
        return int((await r.info("server"))["process_id"])
    finally:
        await r.aclose()


def config(fake_url: str, storage: str) -> str:
    return storage + bench.gateway_config(fake_url)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--concurrency", default="1,16,64")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="qf-scale-bench-"))
    lua = tmp / "post.lua"
    lua.write_text(bench.LUA.format(body=json.dumps(bench.BODY)))
    db = f"qf_bench_{uuid.uuid4().hex[:10]}"
    prefix = f"qfbench:{uuid.uuid4().hex[:10]}:"
    asyncio.run(_pg(f'CREATE DATABASE "{db}"'))
    redis_pid = asyncio.run(_redis_pid_and_drop(None))
    storages = {
        "embedded (memory + SQLite)": "",
        "Redis + PostgreSQL": (
            f"storage: {{counters: 'redis://127.0.0.1:6379/0', ledger: "
            f"'postgresql://postgres@127.0.0.1:5432/{db}', key_prefix: '{prefix}'}}\n"
        ),
    }
    print(
        "| storage | conc | req/s | p50 ms | p99 ms | gateway CPU ms/req | Redis CPU ms/req | errors | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    cpu_of: dict[tuple[str, int], float] = {}
    fake, fake_url, _ = bench.spawn(
        bench.pinned(1, [bench.PY, "-m", "quotaflow.fake_provider", "--port", "0"]), "listening on"
    )
    try:
        for name, storage in storages.items():
            home = tmp / f"home-{len(storage)}"
            home.mkdir()
            (home / "q.yaml").write_text(config(fake_url, storage))
            gw, gw_url, _ = bench.spawn(
                bench.pinned(
                    0,
                    [
                        bench.PY,
                        "-m",
                        "quotaflow",
                        "serve",
                        "--config",
                        str(home / "q.yaml"),
                        "--port",
                        "0",
                        "--home",
                        str(home),
                    ],
                ),
                "serving on",
            )
            bench.wait_http(gw_url + "/api/health")
            target = gw_url + "/v1/chat/completions"
            for conc in (int(c) for c in args.concurrency.split(",")):
                bench.wrk(target, conc, 2, lua)  # warm-up
                c0, r0 = bench.cpu_seconds(gw.pid), bench.cpu_seconds(redis_pid)
                r = bench.wrk(target, conc, args.seconds, lua)
                n = max(r["requests"], 1)
                cpu = (bench.cpu_seconds(gw.pid) - c0) / n * 1000
                rcpu = (bench.cpu_seconds(redis_pid) - r0) / n * 1000 if storage else float("nan")
                rtxt = f"{rcpu:.3f}" if storage else "—"
                cpu_of[name, conc] = cpu
                load = os.getloadavg()[0]
                print(
                    f"| {name} | {conc} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {cpu:.3f} | {rtxt} | {r['errors']} | {load:.2f} |",
                    flush=True,
                )
            gw.send_signal(signal.SIGTERM)
            gw.wait(20)
        names = list(storages)
        for conc in (int(c) for c in args.concurrency.split(",")):
            ratio = cpu_of[names[1], conc] / cpu_of[names[0], conc]
            print(f"c={conc}: gateway CPU per request, {names[1]} / {names[0]}: ×{ratio:.2f}")
    finally:
        fake.send_signal(signal.SIGTERM)
        fake.wait(20)
        asyncio.run(_redis_pid_and_drop(prefix))
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
