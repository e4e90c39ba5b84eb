"""Real processes for end-to-end tests: the gateway and fake providers, started like a user would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PY = sys.executable
_URL = re.compile(r"(http://(?:127\.0\.0\.1|0\.0\.0\.0):\d+)")


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def start(
    args: list[str],
    *,
    ready: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 20.0,
) -> Proc:
    """Start ``python -m quotaflow ARGS`` and wait for a line containing ``ready`` with a URL."""
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(
        [PY, "-m", "quotaflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=cwd,
    )
    lines: list[str] = []
    found: dict[str, str] = {}
    got = threading.Event()

    def reader() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            lines.append(line.rstrip("\n"))
            if not got.is_set() and ready in line:
                m = _URL.search(line)
                if m:
                    found["url"] = m.group(1)
                    got.set()
        got.set()

    threading.Thread(target=reader, daemon=True).start()
    if not got.wait(timeout) or "url" not in found:
        popen.kill()
        raise RuntimeError(f"{args[0]} did not start:\n" + "\n".join(lines))
    return Proc(popen, found["url"], lines)


@contextlib.contextmanager
def running(
    args: list[str], *, ready: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[Proc]:
    p = start(args, ready=ready, env=env, cwd=cwd)
    try:
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def fake_provider(protocol: str = "openai", *extra: str) -> Iterator[Proc]:
    with running(
        ["fake-provider", "--protocol", protocol, "--port", "0", *extra], ready="listening on"
    ) as p:
        yield p


@contextlib.contextmanager
def gateway(
    config_yaml: str, home: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[Proc]:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)  # private, as the server makes it
    cfg = home / "quotaflow.yaml"
    cfg.write_text(config_yaml)
    with running(
        ["serve", "--config", str(cfg), "--port", "0", "--home", str(home), *extra],
        ready="serving on",
        env=env,
    ) as p:
        yield p


def fake_control(
    fake: Proc, path: str, payload: dict[str, Any] | None = None, method: str = "POST"
) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(
        fake.url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def ledger_rows(
    home: Path, where: str = "1=1", params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{home / 'quotaflow.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [
            dict(r) for r in db.execute(f"SELECT * FROM ledger WHERE {where} ORDER BY id", params)
        ]
    finally:
        db.close()


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


CHAT_BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
).encode()


def chat_status(url: str) -> int:
    """The HTTP status of one small chat completion through the gateway at ``url``."""
    req = urllib.request.Request(
        url + "/v1/chat/completions", data=CHAT_BODY, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code
