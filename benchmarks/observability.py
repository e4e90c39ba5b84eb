"""What observability costs per request: quotaflow's CPU per request with metrics off, with
metrics on (the default), with the access log on top, and with tracing on top.

Every variant is a ``quotaflow serve`` pinned to core 0 (the fake provider, wrk and a small
OTLP sink on core 1, as in ``load.py``), all running at once and measured in alternating
rounds so each sees the machine in the same state; the medians over the rounds are printed
with the machine's load average, since the 2 cores may be shared.

Run: ``.venv/bin/python benchmarks/observability.py`` (needs ``wrk`` and the otel extra).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import load

OTLP_SINK = """
from aiohttp import web
async def ok(request):
    await request.read()
    return web.Response(status=200)
app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/v1/traces", ok)
print("serving on http://127.0.0.1:%d" % int(__import__("sys").argv[1]), flush=True)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), print=None)
"""

VARIANTS = {
    "metrics off": {"QUOTAFLOW_METRICS": "off", "QUOTAFLOW_LOG_LEVEL": "warning"},
    "metrics on (default)": {"QUOTAFLOW_LOG_LEVEL": "warning"},
    "metrics + access log": {"QUOTAFLOW_LOG_LEVEL": "info"},
    "metrics + tracing": {"QUOTAFLOW_LOG_LEVEL": "warning", "OTEL_TRACES_EXPORTER": "otlp"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="qf-obs-bench-"))
    lua = tmp / "post.lua"
    lua.write_text(load.LUA.format(body=json.dumps(load.BODY)))
    try:
        fake, fake_url, _ = load.spawn(
            load.pinned(1, [load.PY, "-m", "quotaflow.fake_provider", "--port", "0"]),
            "listening on",
        )
        port = load_free_port()
        (tmp / "sink.py").write_text(OTLP_SINK)
        load.spawn(load.pinned(1, [load.PY, str(tmp / "sink.py"), str(port)]), "serving on")
        otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
        servers = {}
        for name, env in VARIANTS.items():
            home = tmp / name.replace(" ", "-").replace("(", "").replace(")", "")
            home.mkdir()
            (home / "q.yaml").write_text(load.gateway_config(fake_url))
            serve = load.serve_command(home)
            traced = "OTEL_TRACES_EXPORTER" in env  # the endpoint alone would turn tracing on
            proc, url, _ = load.spawn(serve, "serving on", {**env, **(otlp if traced else {})})
            load.wait_http(url + "/api/health")
            servers[name] = (proc, url + "/v1/chat/completions")
        for _, url in servers.values():
            load.wrk(url, args.concurrency, 2, lua)  # warm-up
        cpu: dict[str, list[float]] = {n: [] for n in servers}
        rps: dict[str, list[float]] = {n: [] for n in servers}
        loads = []
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for name, (proc, url) in servers.items():
                c0 = load.cpu_seconds(proc.pid)
                r = load.wrk(url, args.concurrency, args.seconds, lua)
                if r["errors"]:
                    sys.exit(f"{name}: {r['errors']} failed requests")
                cpu[name].append((load.cpu_seconds(proc.pid) - c0) / max(r["requests"], 1) * 1000)
                rps[name].append(r["rps"])
        # Each round's ratio to the same round's "metrics off": the machine's load drifts
        # between rounds, far less within one.
        off = cpu["metrics off"]
        print(
            f"# observability cost, c={args.concurrency}, {args.rounds} rounds of {args.seconds:g}s, "
            f"1-min load average during the rounds {min(loads):.2f}–{max(loads):.2f} on {os.cpu_count()} cores"
        )
        print(
            "| variant | gateway CPU ms/req (median) | vs metrics off, same round (median) | req/s (median) |"
        )
        print("|---|---:|---:|---:|")
        for name in servers:
            ratio = statistics.median(c / o - 1 for c, o in zip(cpu[name], off, strict=True))
            print(
                f"| {name} | {statistics.median(cpu[name]):.3f} | {ratio * 100:+.1f} % | {statistics.median(rps[name]):,.0f} |"
            )
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        fake.send_signal(signal.SIGTERM)
    finally:
        load.stop_all()


def load_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
