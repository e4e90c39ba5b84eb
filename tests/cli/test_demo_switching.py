"""``quotaflow demo`` keeps switching for as long as it runs: after a minute most requests
are still answered and every provider still serves; keys cool down and come back."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

RUN_S = 62  # one full minute window and then some: the quotas have reset at least once
PROVIDERS = {"groq", "openai", "anthropic", "gemini"}


@pytest.mark.e2e
def test_demo_still_switches_after_its_first_minute(tmp_path: Path) -> None:
    args = ["demo", "--port", "0", "--duration", str(RUN_S), "--home", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-m", "quotaflow", *args],
        capture_output=True,
        text=True,
        timeout=RUN_S + 60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    closing = out.stdout.rstrip().splitlines()[-1]
    assert closing.startswith("The demo ran ") and closing.endswith("."), closing
    m = re.search(r"In the last 30 s, (\d+) of (\d+) were answered \(\d+%\), by (.+)\.$", closing)
    assert m, closing
    answered, sent = int(m.group(1)), int(m.group(2))
    assert sent > 0 and answered / sent >= 0.8, closing
    assert set(re.split(r", | and ", m.group(3))) == PROVIDERS, closing

    db = sqlite3.connect(f"file:{tmp_path / 'demo' / 'quotaflow.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT ts, provider, status, http_status FROM ledger ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    end = max(ts for ts, *_ in rows)
    recent = {p for ts, p, status, _ in rows if status == "ok" and ts >= end - 30}
    assert recent == PROVIDERS  # every provider served in the last 30 s
    cooled = {(p, ts) for ts, p, status, code in rows if code == 429}
    assert len({p for p, _ in cooled}) >= 3  # providers took turns answering 429
    recovered = [(p, at) for p, at in cooled if at < end - 10]  # had time to cool down
    assert recovered
    for provider, at in recovered:  # and each was used again once its cool-down ended
        assert any(p == provider and s == "ok" and ts > at for ts, p, s, _ in rows), provider


def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(
    "command", [["demo", "--duration", "3"], ["fake-provider"]], ids=["demo", "fake-provider"]
)
def test_busy_port_is_one_line_naming_the_port_and_the_flag(
    command: list[str], tmp_path: Path
) -> None:
    sock, port = _busy_port()
    try:
        args = [sys.executable, "-m", "quotaflow", *command, "--port", str(port)]
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        sock.close()
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(port) in lines[0] and "--port" in lines[0] and "in use" in lines[0]
