"""CPU per request that a busy machine cannot blur: instructions counted by callgrind.

Wall-clock and CPU-time benchmarks on a shared 2-core machine move by ±20 % from run to run;
the number of instructions the gateway executes per request hardly does (within 2 % here). This
runs ``quotaflow serve`` under ``valgrind --tool=callgrind`` against the fake provider
(0 ms), sends ``--small`` and then, in a second run, ``--large`` chat completions at
``--concurrency``, and prints the difference divided by the difference in requests: the
instructions of one request, start-up and shut-down cancelled out. ``--other NAME=PATH``
measures another checkout the same way (its own ``.venv``), side by side. The floors are
counted the same way in the same run: the bare proxy (``benchmarks/bare_proxy.py``) and the
durable floor (the bare proxy with ``--journal``: a row committed before each upstream call
and settled before each answer); "× floor" is the floor's count over quotaflow's, which is
what the throughput ratio comes to when the gateway's core is the bottleneck.

What it does not count: the kernel's work (socket reads and writes, fsync), which CPU time
includes; so it compares code, not machines. Needs valgrind (``apt-get install -y valgrind``)
and takes about a minute and a half per cell::

    .venv/bin/python benchmarks/instructions.py --other before=/tmp/quotaflow-before
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load as bench

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ("floor", "durable floor")


def spawn(args: list[str], ready: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.stdout is not None
    lines: list[str] = []
    for line in p.stdout:
        lines.append(line)
        m = re.search(r"http://[\d.]+:(\d+)", line) if ready in line else None
        if m:
            threading.Thread(target=lines.extend, args=(p.stdout,), daemon=True).start()
            return p, f"http://127.0.0.1:{m.group(1)}", lines
    raise RuntimeError("".join(lines[-30:]))


async def load(url: str, n: int, concurrency: int) -> None:
    left = n
    async with aiohttp.ClientSession() as s:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with s.post(url + "/v1/chat/completions", json=bench.BODY) as r:
                    if r.status != 200:
                        raise RuntimeError(f"{r.status}: {await r.text()}")
                    await r.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def instructions(
    checkout: Path,
    n: int,
    concurrency: int,
    serve_args: list[str],
    client: str = "fast",
    floor: str | None = None,
) -> int:
    """Instructions of one ``quotaflow serve`` run that answered ``n`` requests (plus 200
    to warm up); with ``floor`` ("floor" or "durable floor"), of the bare proxy instead."""
    py = str(checkout / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        fake, fake_url, _ = spawn(
            [py, "-m", "quotaflow.fake_provider", "--port", "0", "--latency-ms", "0"],
            "listening on",
        )
        try:
            (home / "q.yaml").write_text(bench.gateway_config(fake_url, client))
            if floor is None:
                command = [
                    py, "-m", "quotaflow", "serve", "--config", str(home / "q.yaml"),
                    "--port", "0", "--home", str(home), *serve_args,
                ]  # fmt: skip
            else:
                command = [py, str(ROOT / "benchmarks" / "bare_proxy.py"), fake_url, "0"]
                if floor == "durable floor":
                    command += ["--journal", str(home / "journal.db")]
            gw, url, lines = spawn(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
                "serving on",
            )
            asyncio.run(load(url, 200, concurrency))
            asyncio.run(load(url, n, concurrency))
            gw.send_signal(signal.SIGTERM)
            gw.wait(900)  # start-up and shut-down under valgrind, on a busy machine
        finally:
            fake.send_signal(signal.SIGTERM)
            fake.wait(30)
    for line in reversed(lines):
        if "Collected :" in line:
            return int(line.split()[-1])
    raise RuntimeError("callgrind printed no total:\n" + "".join(lines[-20:]))


def knows_log_level(checkout: Path) -> bool:
    py = str(checkout / ".venv" / "bin" / "python")
    out = subprocess.run([py, "-m", "quotaflow", "serve", "--help"], capture_output=True, text=True)
    return "--log-level" in out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--other", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--small", type=int, default=300)
    ap.add_argument("--large", type=int, default=1300)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--aiohttp-client",
        action="store_true",
        help="add a cell for this checkout with settings.http_client: aiohttp",
    )
    ap.add_argument(
        "--log-levels", default="info,warning", help="one cell per level (info: access lines)"
    )
    ap.add_argument("--no-floors", action="store_true", help="leave the two floors out")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install -y valgrind")
    checkouts = [("this", ROOT)] + [
        (name, Path(path).resolve()) for name, path in (o.split("=", 1) for o in args.other)
    ]
    cells = [(name, path, "fast") for name, path in checkouts]
    if args.aiohttp_client:
        cells.append(("this", ROOT, "aiohttp"))
    c = args.concurrency

    def per_request(path: Path, serve_args: list[str], client: str, floor: str | None) -> float:
        small = instructions(path, args.small, c, serve_args, client, floor)
        large = instructions(path, args.large, c, serve_args, client, floor)
        return float(large - small) / float(args.large - args.small)

    floors = {} if args.no_floors else {f: per_request(ROOT, [], "", f) for f in FLOORS}
    print(
        f"| checkout | upstream client | log level | instructions per request "
        f"(c={c}) | × floor | × durable floor |"
    )
    print("|---|---|---|---:|---:|---:|")
    for name, per in floors.items():
        ratios = " | ".join(f"{floors[f] / per:.2f}" for f in FLOORS)
        print(f"| {name} (bare proxy) | aiohttp | — | {per / 1000:,.0f}k | {ratios} |")
    for level in args.log_levels.split(","):
        for name, path, client in cells:
            serve_args = ["--log-level", level]
            if not knows_log_level(path):
                serve_args = []  # a checkout from before access lines: it has none to drop
            per = per_request(path, serve_args, client, None)
            ratios = " | ".join(f"{floors[f] / per:.2f}" for f in floors) or "— | —"
            print(f"| {name} | {client} | {level} | {per / 1000:,.0f}k | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
