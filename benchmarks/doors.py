"""Benchmark: what each door costs beside ``/v1/chat/completions``.

One gateway in front of three fake providers (OpenAI-compatible with embeddings, Anthropic,
Gemini). Each door is asked one small question at a time (concurrency 1), in blocks of
``--requests`` that rotate through the doors for ``--rounds`` rounds, so that a busy
machine's drift falls on every door alike. For each door and upstream protocol it prints the
median latency and the gateway's CPU per request (from ``/proc``), and both as a difference
from chat completions on the same upstream::

    .venv/bin/python benchmarks/doors.py --requests 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from load import cpu_seconds, spawn, stop_all

PY = sys.executable
KEY = "sk-bench-doors-1"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.0-flash"}
BASE = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta"}
TEXT = "hello there"


def config(urls: dict[str, str]) -> str:
    lines = ["settings: {strategy: priority, max_wait_s: 0}", "providers:"]
    for proto, url in urls.items():
        lines += [
            f"  - name: {proto}",
            f"    protocol: {proto}",
            f"    base_url: {url}{BASE[proto]}",
            "    models:",
            f"      - {{name: {MODELS[proto]}, input: 1, output: 2}}",
        ]
        if proto == "openai":
            lines.append("      - {name: embed, kind: embedding, input: 0.1, output: 0}")
        lines += ["    keys:", f"      - {{id: {proto}-1, secret: {KEY}, limits: []}}"]
    return "\n".join(lines) + "\n"


Request = tuple[str, dict[str, Any]]


def chat(model: str) -> Request:
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": TEXT}]}
    return "/v1/chat/completions", body


def messages(model: str) -> Request:
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": TEXT}]}
    return "/v1/messages", body


def responses(model: str) -> Request:
    return "/v1/responses", {"model": model, "input": TEXT, "max_output_tokens": 16}


def gemini(model: str) -> Request:
    body = {"contents": [{"role": "user", "parts": [{"text": TEXT}]}]}
    return f"/v1beta/models/{model}:generateContent", body


def embeddings(model: str) -> Request:
    return "/v1/embeddings", {"model": "embed", "input": [TEXT, TEXT], "encoding_format": "float"}


DOORS: dict[str, Callable[[str], Request]] = {
    "chat": chat,
    "messages": messages,
    "responses": responses,
    "gemini": gemini,
}


async def block(
    s: aiohttp.ClientSession, url: str, pid: int, req: Request, n: int
) -> tuple[list[float], float]:
    path, body = req
    lat: list[float] = []
    cpu0 = cpu_seconds(pid)
    for _ in range(n):
        t0 = time.perf_counter()
        async with s.post(url + path, json=body) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{path}: HTTP {r.status}")
        lat.append((time.perf_counter() - t0) * 1000)
    return lat, (cpu_seconds(pid) - cpu0) / n * 1000


async def run(url: str, pid: int, n: int, rounds: int) -> dict[tuple[str, str], Any]:
    cases: list[tuple[str, str, Request]] = [
        (door, proto, make(MODELS[proto])) for door, make in DOORS.items() for proto in MODELS
    ]
    cases.append(("embeddings", "openai", embeddings("embed")))
    lat: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    async with aiohttp.ClientSession() as s:
        for _door, _proto, req in cases:  # warm-up
            await block(s, url, pid, req, 20)
        for _ in range(rounds):
            for door, proto, req in cases:
                ls, c = await block(s, url, pid, req, n)
                lat.setdefault((door, proto), []).extend(ls)
                cpu.setdefault((door, proto), []).append(c)
    return {k: (statistics.median(lat[k]), statistics.median(cpu[k])) for k in lat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="requests per block")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    try:
        urls = {}
        for proto in MODELS:
            _, url, _ = spawn(
                [PY, "-m", "quotaflow", "fake-provider", "--protocol", proto, "--port", "0",
                 "--key", KEY],
                "listening on",
            )  # fmt: skip
            urls[proto] = url
        home = Path(tempfile.mkdtemp(prefix="qf-doors-bench-"))
        (home / "quotaflow.yaml").write_text(config(urls))
        gw, gw_url, _ = spawn(
            [PY, "-m", "quotaflow", "serve", "--config", str(home / "quotaflow.yaml"),
             "--home", str(home), "--port", "0"],
            "serving on",
        )  # fmt: skip
        results = asyncio.run(run(gw_url, gw.pid, args.requests, args.rounds))
    finally:
        stop_all()
    print("| door | upstream | p50 ms | vs chat | gateway CPU ms/request | vs chat |")
    print("|---|---|---:|---:|---:|---:|")
    for (door, proto), (p50, cpu) in results.items():
        base = results.get(("chat", proto), (p50, cpu))
        how = "native" if (door, proto) in (("messages", "anthropic"), ("gemini", "gemini")) else ""
        print(
            f"| {door} | {proto} {how} | {p50:.2f} | {p50 - base[0]:+.2f} | {cpu:.2f} | "
            f"{cpu - base[1]:+.2f} |"
        )


if __name__ == "__main__":
    main()
