"""Big-ledger benchmark (issue 21, "months of ledger"): what a ledger of 0 / 100k / 1M / 10M
rows costs the embedded gateway to start and to read.

Each ledger is realistic: 30 days up to now, 10 keys over 3 providers, 2 models each, 6
agents, 3 % errors, 1 % refusals, 2 % estimated costs. It is built by bulk SQL (indexes and
rollup triggers off, then the rollups back-filled and the indexes made by the ledger's own
migrations), then for each size, ``--repeat`` times (medians printed):

- ``ready``: ``quotaflow serve`` started until /api/health answers (counters rebuilt from
  the ledger, the start-up pending-row scan), and its RSS then;
- ``dashboard``: the first ``/api/dashboard`` snapshot (nothing cached), and the event-loop
  stall meanwhile: the longest wait of a probe asking /livez every millisecond (a request
  that waits is a loop that was busy); ``idle`` is the same probe's worst over 0.5 s with
  nothing loading (what the machine itself adds);
- ``/api/status`` and ``/api/history?limit=50`` (median of 5 each, after the dashboard);
- ``report`` (``quotaflow report --since 30d --group-by day``) and ``forecast``: wall time
  and peak RSS of the command.

With ``--soak N``, it also sends N requests through a gateway to a fake provider (``wrk`` at
concurrency 16) and prints its RSS every N/10 requests: point 5's "stay flat".

Run: ``.venv/bin/python benchmarks/ledger.py`` (``--rows 0,100000,1000000,10000000``;
10M rows take a few minutes to build and ~2.5 GB of disk).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load as bench

PY = sys.executable
DAY = 86400.0
TOKEN = "qfadm-" + "b" * 40  # a benchmark's own admin token (not a secret)
PROVIDERS = {
    "openai": ("gpt-4o-mini", "gpt-4o"),
    "anthropic": ("claude-haiku", "claude-sonnet"),
    "gemini": ("gemini-flash", "gemini-pro"),
}
KEYS = [("openai", i) for i in range(4)] + [("anthropic", i) for i in range(4, 7)]
KEYS += [("gemini", i) for i in range(7, 10)]


def config() -> str:
    lines = ["settings: {timezone: UTC}", "providers:"]
    for name, models in PROVIDERS.items():
        lines += [
            f"  - name: {name}",
            "    protocol: openai",
            "    base_url: http://127.0.0.1:9/v1",
            f"    models: [{', '.join(models)}]",
            "    keys:",
        ]
        for prov, i in KEYS:
            if prov == name:
                lines.append(
                    f"      - {{id: k{i}, secret: sk-bench-{i}, limits: ["
                    "{metric: tokens, window: day, amount: 1000000000}, "
                    "{metric: cost, window: month, amount: 100000}, "
                    "{metric: requests, window: rolling 1h, amount: 100000000}]}"
                )
    return "\n".join(lines) + "\n"


TRIGGERS = (
    "ledger_rollup_insert",
    "ledger_rollup_settle",
    "ledger_rollup_unsettle",
    "ledger_outcome_insert_alone",
    "ledger_outcome_insert_joins",
    "ledger_outcome_settle_alone",
    "ledger_outcome_settle_joins",
    "ledger_outcome_settle",
    "ledger_settled_is_final",
)


def fill(
    db: sqlite3.Connection, lo: int, hi: int, start: float, step: float, pending: bool = False
) -> None:
    """Insert rows ``lo`` to ``hi - 1`` of the benchmark's ledger (row ``i`` at ``start + i *
    step``) in one statement; ``pending``: with their use but status 'pending', for
    :func:`settle` to settle as a server does (the rollups count a row when it settles)."""
    key_case = " ".join(f"WHEN {i} THEN '{p}'" for p, i in KEYS)
    model_case = " ".join(
        f"WHEN '{p}' THEN CASE (i / 10) % 2 WHEN 0 THEN '{m[0]}' ELSE '{m[1]}' END"
        for p, m in PROVIDERS.items()
    )
    db.execute(
        f"""
        INSERT INTO ledger (request_id, attempt, ts, agent, route, provider, key_id, model,
            prompt_tokens, completion_tokens, total_tokens, requests, cost_usd, latency_ms,
            status, error_kind, estimated, source, detail)
        WITH RECURSIVE c(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM c WHERE i < {hi - 1}),
        r AS (SELECT i, CASE i % 10 {key_case} END AS prov,
                     CASE WHEN i % 97 = 0 THEN 'refused' WHEN i % 33 = 0 THEN 'error'
                          ELSE 'ok' END AS st,
                     200 + (i * 37) % 1800 AS tok FROM c)
        SELECT 'r' || i, 1, {start!r} + i * {step!r}, 'agent-' || ((i * 7) % 6), 'smart',
            CASE st WHEN 'refused' THEN '' ELSE prov END,
            CASE st WHEN 'refused' THEN '' ELSE 'k' || (i % 10) END,
            CASE prov {model_case} END,
            CASE st WHEN 'ok' THEN tok / 3 ELSE 0 END,
            CASE st WHEN 'ok' THEN tok - tok / 3 ELSE 0 END,
            CASE st WHEN 'ok' THEN tok ELSE 0 END,
            CASE st WHEN 'refused' THEN 0 ELSE 1 END,
            CASE st WHEN 'ok' THEN tok * 0.000002 ELSE 0 END,
            CASE st WHEN 'refused' THEN NULL ELSE 300 + i % 700 END,
            {"'pending'" if pending else "st"}, CASE st WHEN 'ok' THEN NULL WHEN 'error' THEN 'server_error'
                ELSE 'quota_exhausted' END,
            CASE WHEN i % 50 = 0 THEN 1 ELSE 0 END, 'proxy', NULL
        FROM r
        """
    )


def build(home: Path, rows: int, now: float) -> float:
    """A ledger of ``rows`` rows over the 30 days before ``now``; returns seconds taken.

    What it was built with is kept in ``built.json`` beside it: :func:`top_up` brings a kept
    ledger up to a later ``now`` instead of building it again."""
    t0 = time.monotonic()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "built.json").unlink(missing_ok=True)
    for f in home.glob("quotaflow.db*"):
        f.unlink()
    (home / "q.yaml").write_text(config())
    db_path = home / "quotaflow.db"
    migrate(home)  # the schema, as a server makes it
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    for trig in TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {trig}")
    for idx in ("ledger_ts", "ledger_key_ts", "ledger_agent_ts", "ledger_request"):
        db.execute(f"DROP INDEX IF EXISTS {idx}")
    start, step = now - 30 * DAY, 30 * DAY / max(rows, 1)
    if rows:
        db.execute("BEGIN")
        fill(db, 0, rows, start, step)
        db.execute("COMMIT")
    # The rollups are back-filled by the ledger's own migration (as an upgraded ledger's are).
    db.execute("DELETE FROM ledger_slots")
    db.execute("DELETE FROM ledger_days")
    db.execute("DELETE FROM ledger_outcomes")
    db.execute("DELETE FROM ledger_key_slots")
    db.execute("DELETE FROM ledger_meta WHERE name='rollups'")
    db.close()
    migrate(home)
    built = {"rows": rows, "filled": rows, "start": start, "step": step}
    (home / "built.json").write_text(json.dumps(built))
    return time.monotonic() - t0


def settle(db: sqlite3.Connection, lo: int, hi: int) -> None:
    """Settle rows ``lo`` to ``hi - 1`` that :func:`fill` wrote pending, with the status it
    would have given them: the UPDATE a server's finish is, with the rollup triggers on."""
    db.execute(
        "UPDATE ledger SET status = CASE WHEN n % 97 = 0 THEN 'refused' WHEN n % 33 = 0 "
        "THEN 'error' ELSE 'ok' END FROM (SELECT id AS rid, CAST(substr(request_id, 2) AS "
        "INTEGER) AS n FROM ledger WHERE status = 'pending' AND request_id >= 'r') "
        "WHERE ledger.id = rid AND n BETWEEN ? AND ?",
        (lo, hi - 1),
    )


def top_up(home: Path, now: float) -> int | None:
    """Bring a ledger :func:`build` made earlier up to ``now``: the rows it would have had
    since, at the same rate, written pending and settled with the rollup triggers on (as a
    server adds them).
    Returns the ledger's rows, or ``None`` when there is no such ledger."""
    try:
        built = json.loads((home / "built.json").read_text())
    except (OSError, ValueError):
        return None
    if not built["rows"]:
        return 0
    upto = int((now - built["start"]) / built["step"])
    if upto > built["filled"]:
        db = sqlite3.connect(home / "quotaflow.db", isolation_level=None)
        db.execute("BEGIN")
        fill(db, built["filled"], upto, built["start"], built["step"], pending=True)
        settle(db, built["filled"], upto)
        db.execute("COMMIT")
        db.close()
        built["filled"] = upto
        (home / "built.json").write_text(json.dumps(built))
    return int(built["filled"])


def migrate(home: Path) -> None:
    code = (
        "import asyncio, sys; from pathlib import Path; "
        "from quotaflow.storage.ledgers.sqlite import SqliteLedger\n"
        "async def main():\n"
        "    db = SqliteLedger(Path(sys.argv[1]) / 'quotaflow.db'); await db.open(); "
        "await db.close()\n"
        "asyncio.run(main())"
    )
    subprocess.run([PY, "-c", code, str(home)], check=True)


def get(url: str) -> float:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {TOKEN}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: {r.status}")
    return time.perf_counter() - t0


class StallProbe:
    """Asks /livez every millisecond from a thread; the longest answer is the longest time
    the gateway's event loop could not answer (plus one small request's own time)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import http.client

        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            conn.request("GET", "/livez")
            conn.getresponse().read()
            self.worst = max(self.worst, time.perf_counter() - t0)
            time.sleep(0.001)
        conn.close()

    def __enter__(self) -> StallProbe:
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


FIELDS = ("ready_s", "rss_mb", "idle_ms", "dashboard_ms", "stall_ms", "status_ms", "history_ms")
NO_COMMAND = (math.nan, math.nan, math.nan)


def serve_once(home: Path) -> dict[str, float]:
    env = {"QUOTAFLOW_ADMIN_TOKEN": TOKEN}
    t0 = time.monotonic()
    proc, url, _ = bench.spawn(bench.serve_command(home), "serving on", env=env)
    bench.wait_http(url + "/api/health", timeout=600)
    out = {"ready_s": time.monotonic() - t0, "rss_mb": bench.rss_mb(proc.pid)}
    time.sleep(2.0)  # what the server does once it listens (prices warmed in a thread) is done
    with StallProbe(url) as idle:  # the probe's own worst on this machine, nothing loading
        time.sleep(0.5)
    out["idle_ms"] = idle.worst * 1000
    with StallProbe(url) as probe:
        out["dashboard_ms"] = get(url + "/api/dashboard") * 1000
    out["stall_ms"] = probe.worst * 1000
    out["status_ms"] = statistics.median(get(url + "/api/status") for _ in range(5)) * 1000
    out["history_ms"] = (
        statistics.median(get(url + "/api/history?limit=50") for _ in range(5)) * 1000
    )
    out["rss_after_mb"] = bench.rss_mb(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    bench.SPAWNED.remove(proc)
    return out


def command(home: Path, *args: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of ``quotaflow ARGS`` on ``home`` (CPU
    time says what the command costs on a busy machine, where wall time waits its turn)."""
    cmd = ["/usr/bin/time", "-f", "%U %S %M", PY, "-m", "quotaflow", *args]
    cmd += ["--config", str(home / "q.yaml"), "--home", str(home)]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    took = time.monotonic() - t0
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{args}: {done.stderr[-500:]}")
    user, system, rss = done.stderr.strip().splitlines()[-1].split()
    return took, float(user) + float(system), int(rss) / 1024


def soak(tmp: Path, requests: int) -> None:
    """RSS of a gateway while ``requests`` requests go through it (16 at a time from an
    aiohttp client in this process, on the other core), printed every tenth."""
    import asyncio
    import json

    import aiohttp

    _, fake_url, _ = bench.spawn(
        bench.pinned(1, [PY, "-m", "quotaflow.fake_provider", "--port", "0"]), "listening on"
    )
    home = Path(tempfile.mkdtemp(prefix="soak-", dir=tmp))
    (home / "q.yaml").write_text(bench.gateway_config(fake_url))
    gw, url, _ = bench.spawn(bench.serve_command(home), "serving on")
    bench.wait_http(url + "/api/health")
    body = json.dumps(bench.BODY).encode()
    print(f"\nsoak: {requests:,} requests, 16 at a time; the gateway's RSS")
    print(f"{'requests':>12} {'RSS MB':>8} {'failed':>7}")
    print(f"{0:>12,} {bench.rss_mb(gw.pid):>8.1f}", flush=True)

    async def run() -> None:
        sent = done = failed = 0
        step = max(requests // 10, 1)
        headers = {"content-type": "application/json"}
        async with aiohttp.ClientSession() as s:

            async def worker() -> None:
                nonlocal sent, done, failed
                while sent < requests:
                    sent += 1
                    async with s.post(
                        url + "/v1/chat/completions", data=body, headers=headers
                    ) as r:
                        await r.read()
                        failed += r.status != 200
                    done += 1
                    if done % step == 0:
                        print(f"{done:>12,} {bench.rss_mb(gw.pid):>8.1f} {failed:>7}", flush=True)

            await asyncio.gather(*(worker() for _ in range(16)))

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="0,100000,1000000", help="ledger sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size (medians shown)")
    ap.add_argument("--soak", type=int, default=0, help="also a soak of N requests (RSS)")
    ap.add_argument(
        "--keep", action="store_true", help="keep the ledgers (their folder is printed)"
    )
    ap.add_argument(
        "--ledgers",
        type=Path,
        help="keep the ledgers in this folder and reuse them on later runs (each brought up "
        "to now at its own rate: a kept ledger of N rows grows by N/720 an hour)",
    )
    ap.add_argument(
        "--only",
        default="",
        help="measure only these, comma-separated: serve, report, forecast (default: all)",
    )
    args = ap.parse_args()
    only = set(filter(None, args.only.split(","))) or {"serve", "report", "forecast"}
    cpus = os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, {cpus} cores, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")  # fmt: skip
    if args.ledgers is not None:
        args.ledgers.mkdir(parents=True, exist_ok=True)
        tmp = args.ledgers
    else:
        tmp = Path(tempfile.mkdtemp(prefix="qf-ledger-bench-"))
    now = time.time()
    head = (
        f"{'rows':>10} {'build s':>8} {'ready s':>8} {'RSS MB':>7} {'dash ms':>8} "
        f"{'stall ms':>9} {'idle ms':>8} {'status ms':>10} {'hist ms':>8} {'report s':>9} "
        f"{'cpu s':>6} {'rep MB':>7} {'fcast s':>8} {'cpu s':>6} {'fc MB':>6}"
    )
    lines = [head]
    try:
        for n in (int(x) for x in args.rows.split(",")):
            home = tmp / f"rows-{n}"
            t0 = time.monotonic()
            have = top_up(home, time.time()) if args.ledgers is not None else None
            if have is None:
                built = build(home, n, now)
            else:  # a kept ledger, brought up to now
                built = time.monotonic() - t0
                if have != n:
                    print(f"rows-{n}: {have:,} rows now (kept, brought up to now)")
            none = [{k: math.nan for k in FIELDS}]
            runs = [serve_once(home) for _ in range(args.repeat)] if "serve" in only else none
            reports = [command(home, "report", "--since", "30d", "--group-by", "day")
                       for _ in range(args.repeat)] if "report" in only else [NO_COMMAND]  # fmt: skip
            forecasts = (
                [command(home, "forecast") for _ in range(args.repeat)]
                if "forecast" in only
                else [NO_COMMAND]
            )

            def med(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            line = (
                f"{n:>10,} {built:>8.1f} {med('ready_s'):>8.2f} {med('rss_mb'):>7.1f} "
                f"{med('dashboard_ms'):>8.0f} {med('stall_ms'):>9.1f} {med('idle_ms'):>8.1f} "
                f"{med('status_ms'):>10.1f} "
                f"{med('history_ms'):>8.1f} "
                f"{statistics.median(r[0] for r in reports):>9.2f} "
                f"{statistics.median(r[1] for r in reports):>6.2f} "
                f"{statistics.median(r[2] for r in reports):>7.0f} "
                f"{statistics.median(r[0] for r in forecasts):>8.2f} "
                f"{statistics.median(r[1] for r in forecasts):>6.2f} "
                f"{statistics.median(r[2] for r in forecasts):>6.0f}"
            )
            lines.append(line)
            print("\n".join(lines) if len(lines) == 2 else line, flush=True)
            if not args.keep and args.ledgers is None:
                for f in home.iterdir():
                    f.unlink()
        if args.soak:
            soak(tmp, args.soak)
    finally:
        bench.stop_all()
        if args.keep or args.ledgers is not None:
            print(f"ledgers kept in {tmp}")


if __name__ == "__main__":
    main()
