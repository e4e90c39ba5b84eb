"""Tail latency: p50, p99 and p99.9 of quotaflow beside the floor, in one pinned run.

The floor is ``benchmarks/bare_proxy.py`` (an aiohttp pass-through that does no accounting).
Layout as in ``benchmarks/load.py``: the proxies on core 0, the fake provider (0 ms) and
wrk on core 1. For each concurrency every repetition runs a cell of each target in turn
(floor, quotaflow, and ``--other`` checkouts if given), so a busy machine hurts them alike;
the load average is printed beside each cell, and the median of the repetitions at the end.
"Added" is quotaflow's percentile minus the floor's from the same repetition.

Run: ``.venv/bin/python benchmarks/tail.py`` (``--seconds 20 --repeat 3`` by default).
``--other NAME=PATH`` adds quotaflow from another checkout's ``src`` (e.g. main's) as a peer.
``--durable-floor`` adds the bare proxy with a journal (``bare_proxy.py --journal``: a row
committed before each upstream call and settled before each answer) as a second floor, and
"× durable" beside "× floor".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load as bench

# wrk prints these itself at the end of a run (latencies in µs).
DONE = """
done = function(summary, latency, requests)
  io.write(string.format("TAIL p50=%d p99=%d p999=%d n=%d\\n",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.requests))
end
"""


def wrk_tail(url: str, conc: int, seconds: float, lua: Path) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(round(seconds), 1)}s", "-s", str(lua), url]
    out = subprocess.run(bench.pinned(1, cmd), capture_output=True, text=True, check=True).stdout
    m = re.search(r"TAIL p50=(\d+) p99=(\d+) p999=(\d+) n=(\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        raise RuntimeError(f"wrk printed no latencies:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50": int(m.group(1)) / 1000,
        "p99": int(m.group(2)) / 1000,
        "p999": int(m.group(3)) / 1000,
        "requests": int(m.group(4)),
        "rps": float(rps.group(1)),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--other", action="append", default=[], metavar="NAME=SRC")
    ap.add_argument("--durable-floor", action="store_true", help="add the journaling floor")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="qf-tail-bench-"))
    lua = tmp / "post.lua"
    lua.write_text(bench.LUA.format(body=json.dumps(bench.BODY)) + DONE)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # this process stays off the proxies' core
    try:
        _, fake_url, _ = bench.spawn(
            bench.pinned(1, [bench.PY, "-m", "quotaflow.fake_provider", "--port", "0"]),
            "listening on",
        )
        bare, bare_url, _ = bench.spawn(
            bench.pinned(0, [bench.PY, str(bench.ROOT / "benchmarks" / "bare_proxy.py"), fake_url, "0"]),
            "serving on",
        )  # fmt: skip
        targets = [("floor", bare_url, bare.pid)]
        if args.durable_floor:
            journal = str(tmp / "journal.db")
            durable, durable_url, _ = bench.spawn(
                bench.pinned(0, [bench.PY, str(bench.ROOT / "benchmarks" / "bare_proxy.py"), fake_url, "0", "--journal", journal]),
                "serving on",
            )  # fmt: skip
            targets.append(("durable floor", durable_url, durable.pid))
        peers = [("quotaflow", None), *(tuple(o.split("=", 1)) for o in args.other)]
        for name, src in peers:
            home = tmp / f"home-{name}"
            home.mkdir()
            (home / "q.yaml").write_text(bench.gateway_config(fake_url))
            env = {"PYTHONPATH": src} if src else None
            gw, gw_url, _ = bench.spawn(bench.serve_command(home), "serving on", env)
            bench.wait_http(gw_url + "/api/health")
            targets.append((name, gw_url, gw.pid))
        print(
            f"# tail latency — {os.cpu_count()} cores, {args.seconds:g} s cells, "
            f"{args.repeat} repetitions, 0 ms upstream"
        )
        print("| conc | rep | target | req/s | p50 ms | p99 ms | p99.9 ms | added p99 | added p99.9 | CPU ms/req | load avg |")  # fmt: skip
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        summary: dict[tuple[int, str], list[dict[str, float]]] = {}
        for conc in (int(c) for c in args.concurrency.split(",")):
            for _, url, _ in targets:
                wrk_tail(url + "/v1/chat/completions", conc, 2, lua)  # warm-up
            for rep in range(1, args.repeat + 1):
                floor: dict[str, float] = {}
                for name, url, pid in targets:
                    c0 = bench.cpu_seconds(pid)
                    r = wrk_tail(url + "/v1/chat/completions", conc, args.seconds, lua)
                    r["cpu"] = (bench.cpu_seconds(pid) - c0) / max(r["requests"], 1) * 1000
                    r["load"] = os.getloadavg()[0]
                    if name == "floor":
                        floor = r
                    r["add99"] = r["p99"] - floor["p99"]
                    r["add999"] = r["p999"] - floor["p999"]
                    summary.setdefault((conc, name), []).append(r)
                    added = (
                        "—" if name == "floor" else f"{r['add99']:+.2f}",
                        "—" if name == "floor" else f"{r['add999']:+.2f}",
                    )
                    print(
                        f"| {conc} | {rep} | {name} | {r['rps']:,.0f} | {r['p50']:.2f} | "
                        f"{r['p99']:.2f} | {r['p999']:.2f} | {added[0]} | {added[1]} | "
                        f"{r['cpu']:.3f} | {r['load']:.2f} |",
                        flush=True,
                    )
        print("\nmedians over the repetitions:\n")
        print("| conc | target | req/s | × floor | × durable | p99 ms | p99.9 ms | added p99 | p99.9 / floor's | CPU ms/req |")  # fmt: skip
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (conc, name), runs in summary.items():
            base = summary[(conc, "floor")]

            def med(key: str, rs: list[dict[str, float]] = runs) -> float:
                return statistics.median(r[key] for r in rs)

            ratio = med("rps") / med("rps", base)
            durable_runs = summary.get((conc, "durable floor"))
            over_durable = f"{med('rps') / med('rps', durable_runs):.2f}" if durable_runs else "—"
            p999_ratio = med("p999") / med("p999", base)
            print(
                f"| {conc} | {name} | {med('rps'):,.0f} | {ratio:.2f} | {over_durable} | "
                f"{med('p99'):.2f} | "
                f"{med('p999'):.2f} | {med('add99'):+.2f} | {p999_ratio:.2f} | {med('cpu'):.3f} |"
            )
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for p in bench.SPAWNED:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        bench.stop_all()


if __name__ == "__main__":
    main()
