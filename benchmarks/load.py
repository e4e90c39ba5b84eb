"""Load benchmark: quotaflow vs going straight to the (fake) provider.

Layout on a 2-core machine: the gateway pinned to core 0; the fake provider and the load
generator (wrk) on core 1. Every request through the gateway is routed, reserved,
accounted and durably logged in the SQLite ledger. A bare aiohttp pass-through proxy
(``benchmarks/bare_proxy.py``, the yardstick the targets were set with) runs the same load,
pinned like the gateway, so results from different machines can be compared. For each upstream latency (0 ms, 50 ms)
and concurrency (1, 16, 64) it prints throughput, latency p50/p99, the latency quotaflow
adds at p50, and the gateway's CPU time per request; then the time to first byte of a
stream (direct vs through quotaflow), the time to ready, and the gateway's RSS.

Run: ``.venv/bin/python benchmarks/load.py`` (needs ``wrk``: ``apt-get install -y wrk``).
``--litellm`` adds the LiteLLM proxy (one worker) as a peer, installed into
``benchmarks/.venv-litellm`` on first use. ``--aiohttp-client`` adds a second quotaflow with
``settings.http_client: aiohttp`` as a peer. ``--soak 300`` adds a 5-minute RSS soak.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hello there"}],
    "max_tokens": 16,
}
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-1"
"""


def pinned(core: int, args: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *args] if shutil.which("taskset") else args


SPAWNED: list[subprocess.Popen[str]] = []


def stop_all() -> None:
    """Stop every process this run started (also when a step failed)."""
    for p in SPAWNED:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    SPAWNED.clear()


def spawn(
    args: list[str], ready: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, float]:
    t0 = time.monotonic()
    p = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            **(env or {}),
        },
    )
    SPAWNED.append(p)
    assert p.stdout is not None
    for line in p.stdout:
        if ready in line:
            m = re.search(r"http://[\d.]+:(\d+)", line)
            if m:
                # Keep reading what it prints (access lines): a full pipe would block it.
                threading.Thread(target=collections.deque, args=(p.stdout, 0), daemon=True).start()
                return p, f"http://127.0.0.1:{m.group(1)}", time.monotonic() - t0
    raise RuntimeError(f"{args} did not start")


def wait_http(url: str, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.monotonic() - t0
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} never answered")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(url: str, conc: int, seconds: float, lua: Path) -> dict[str, float]:
    out = subprocess.run(
        pinned(1, ["wrk", "-t1", f"-c{conc}", f"-d{max(round(seconds), 1)}s", "-s", str(lua), "--latency", url]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def lat(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": lat("50%"), "p99": lat("99%"), "requests": reqs,
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }  # fmt: skip


async def ttfb(direct_url: str, gw_url: str, n: int) -> tuple[float, float, float]:
    """Time to the first streamed byte, direct and through quotaflow, asked alternately so both
    see the machine in the same state: medians of each and of the per-pair difference."""
    body = {**BODY, "stream": True}
    direct, through, added = [], [], []

    async def first_byte(s: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
        t0 = time.perf_counter()
        async with s.post(url, json=body, headers=headers) as r:
            await r.content.readany()
            took = (time.perf_counter() - t0) * 1000
            await r.read()
        return took

    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            d = await first_byte(s, direct_url, {"authorization": "Bearer sk-bench-1"})
            g = await first_byte(s, gw_url, {})
            direct.append(d)
            through.append(g)
            added.append(g - d)
    return statistics.median(direct), statistics.median(through), statistics.median(added)


def serve_command(home: Path) -> list[str]:
    """``quotaflow serve`` on ``home/q.yaml``, pinned to core 0."""
    args = ["serve", "--config", str(home / "q.yaml"), "--port", "0", "--home", str(home)]
    return pinned(0, [PY, "-m", "quotaflow", *args])


def gateway_config(fake_url: str, http_client: str = "fast") -> str:
    keys = "\n".join(
        f"      - {{id: k{i}, secret: sk-bench-{i}, limits: [{{metric: tokens, window: day, amount: 1000000000}}, {{metric: requests, window: minute, amount: 100000000}}]}}"
        for i in (1, 2)
    )
    client = "" if http_client == "fast" else f", http_client: {http_client}"
    return f"settings: {{strategy: headroom{client}}}\nproviders:\n  - name: openai\n    base_url: {fake_url}/v1\n    keys:\n{keys}\n"


def litellm_peer(fake_url: str, tmp: Path) -> tuple[subprocess.Popen[str], str] | None:
    venv = ROOT / "benchmarks" / ".venv-litellm"
    if not (venv / "bin" / "litellm").exists():
        print("installing LiteLLM into", venv, "(first use only)…", flush=True)
        subprocess.run([PY, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    cfg = tmp / "litellm.yaml"
    cfg.write_text(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
        f"      api_base: {fake_url}/v1\n      api_key: sk-bench-1\n"
    )
    p = subprocess.Popen(
        pinned(0, [str(venv / "bin" / "litellm"), "--config", str(cfg), "--port", "15990", "--num_workers", "1"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        # LiteLLM refuses to start without a master key; wrk sends this one as its bearer.
        env={**os.environ, "LITELLM_MASTER_KEY": "sk-bench-1"},
    )  # fmt: skip
    SPAWNED.append(p)
    wait_http("http://127.0.0.1:15990/health/liveliness", 120)
    return p, "http://127.0.0.1:15990"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--latency", default="0,50", help="upstream latencies in ms")
    ap.add_argument("--litellm", action="store_true")
    ap.add_argument(
        "--aiohttp-client",
        action="store_true",
        help="add a second quotaflow with settings.http_client: aiohttp as a peer",
    )
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of c=16 load sampling RSS")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        # This process measures time to first byte itself: it is a load generator, so it
        # belongs on core 1 with wrk and the upstream, never beside the gateway on core 0.
        os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="qf-bench-"))
    lua = tmp / "post.lua"
    lua.write_text(LUA.format(body=json.dumps(BODY)))
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = cpu
    print(
        f"# quotaflow load benchmark — {model}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "| upstream | conc | target | req/s | p50 ms | p99 ms | added p50 ms | gateway CPU ms/req | errors |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    rss = 0.0
    ready_runs: list[float] = []
    ratios: list[str] = []
    for latency in (float(x) for x in args.latency.split(",")):
        fake, fake_url, _ = spawn(
            pinned(
                1,
                [PY, "-m", "quotaflow.fake_provider", "--port", "0", "--latency-ms", str(latency)],
            ),
            "listening on",
        )
        home = tmp / f"home-{latency:g}"
        home.mkdir()
        (home / "q.yaml").write_text(gateway_config(fake_url))
        serve = serve_command(home)
        if not ready_runs:
            # A first start compiles quotaflow's bytecode (as the first start after an
            # install does); "ready" is measured from the second start on, like a restart.
            first, first_url, _ = spawn(serve, "serving on")
            wait_http(first_url + "/api/health")
            first.send_signal(signal.SIGTERM)
            first.wait(20)
        t0 = time.monotonic()
        gw, gw_url, _ = spawn(serve, "serving on")
        wait_http(gw_url + "/api/health")
        ready_runs.append(time.monotonic() - t0)
        bare, bare_url, _ = spawn(
            pinned(0, [PY, str(ROOT / "benchmarks" / "bare_proxy.py"), fake_url, "0"]),
            "serving on",
        )
        peers = [
            ("direct", fake_url, None),
            ("bare proxy", bare_url, bare.pid),
            ("quotaflow", gw_url, gw.pid),
        ]
        extra = []
        if args.aiohttp_client:
            home_a = tmp / f"home-{latency:g}-aiohttp"
            home_a.mkdir()
            (home_a / "q.yaml").write_text(gateway_config(fake_url, "aiohttp"))
            gw_a, gw_a_url, _ = spawn(serve_command(home_a), "serving on")
            wait_http(gw_a_url + "/api/health")
            peers.append(("quotaflow, aiohttp client", gw_a_url, gw_a.pid))
            extra.append(gw_a)
        lite = litellm_peer(fake_url, tmp) if args.litellm else None
        if lite:
            peers.append(("litellm", lite[1], lite[0].pid))
        for conc in (int(c) for c in args.concurrency.split(",")):
            results = {}
            for name, url, pid in peers:
                target = (
                    url + "/v1/chat/completions" if name != "litellm" else url + "/chat/completions"
                )
                wrk(target, conc, 2, lua)  # warm-up
                c0 = cpu_seconds(pid) if pid else 0.0
                r = wrk(target, conc, args.seconds, lua)
                r["cpu"] = (
                    (cpu_seconds(pid) - c0) / max(r["requests"], 1) * 1000 if pid else float("nan")
                )
                results[name] = r
            if "bare proxy" in results:
                ratios.append(
                    f"{latency:g} ms c={conc}: "
                    f"×{results['quotaflow']['cpu'] / results['bare proxy']['cpu']:.2f}"
                )
            base = results["direct"]["p50"]
            for name, r in results.items():
                added = r["p50"] - base if name != "direct" else 0.0
                cpu_txt = f"{r['cpu']:.3f}" if name != "direct" else "—"
                print(
                    f"| {latency:g} ms | {conc} | {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {added:+.2f} | {cpu_txt} | {r['errors']} |",
                    flush=True,
                )
        rss = max(rss, rss_mb(gw.pid))
        if lite:  # it shares the gateway's core: stopped before the stream and soak runs
            lite[0].send_signal(signal.SIGTERM)
            lite[0].wait(20)
        if latency == 0:
            d_ms, g_ms, added_ms = asyncio.run(
                ttfb(fake_url + "/v1/chat/completions", gw_url + "/v1/chat/completions", 400)
            )
            print(
                f"\nstream time to first byte (c=1, 400 alternating pairs, medians): direct {d_ms:.2f} ms, quotaflow {g_ms:.2f} ms, added {added_ms:+.2f} ms\n"
            )
            if args.soak:
                samples = []
                soak = subprocess.Popen(
                    pinned(
                        1,
                        [
                            "wrk",
                            "-t1",
                            "-c16",
                            f"-d{max(round(args.soak), 1)}s",
                            "-s",
                            str(lua),
                            gw_url + "/v1/chat/completions",
                        ],
                    ),
                    stdout=subprocess.DEVNULL,
                )
                end = time.monotonic() + args.soak
                while time.monotonic() < end:
                    time.sleep(min(5.0, max(end - time.monotonic(), 0)))
                    samples.append(rss_mb(gw.pid))
                soak.wait()
                print(
                    f"soak {args.soak:g}s at c=16: RSS first {samples[0]:.1f} MB, max {max(samples):.1f} MB, last {samples[-1]:.1f} MB\n"
                )
        for p in [gw, bare, fake, *extra]:
            p.send_signal(signal.SIGTERM)
            p.wait(20)
    print(f"quotaflow's CPU per request over the bare proxy's: {', '.join(ratios)}")
    print(
        f"ready after start: {max(ready_runs) * 1000:.0f} ms (spawn → /api/health 200, slowest of {len(ready_runs)} restarts); gateway RSS after load: {rss:.1f} MB"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
