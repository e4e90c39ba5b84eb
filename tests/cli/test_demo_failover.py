"""``quotaflow demo --scenario failover``: one key per protocol, the first two with small
one-time quotas; traffic moves OpenAI → Anthropic → Gemini and no request is refused."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path


def test_failover_scenario_moves_across_all_three_protocols(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "quotaflow", "demo", "--scenario", "failover", "--port", "0",
         "--duration", "5", "--agents", "3", "--home", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    closing = out.stdout.rstrip().splitlines()[-1]
    assert " and 0 refused." in closing, closing
    by_provider = dict(re.findall(r"(\w+) \((\d+)\)", closing.split("Answers came from ", 1)[1]))
    assert set(by_provider) == {"openai", "anthropic", "gemini"}, closing
    assert all(int(n) > 0 for n in by_provider.values())

    db = sqlite3.connect(f"file:{tmp_path / 'demo' / 'quotaflow.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT provider, total_tokens, cost_usd FROM ledger WHERE status='ok' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    order = [p for i, (p, _, _) in enumerate(rows) if i == 0 or rows[i - 1][0] != p]
    assert order == ["openai", "anthropic", "gemini"]  # each switch happens once, in order
    used = {p: sum(t for q, t, _ in rows if q == p) for p in ("openai", "anthropic")}
    assert all(0 < u <= 400 for u in used.values())  # the once-quotas were never overshot
    assert all(cost > 0 for _, _, cost in rows)  # priced from the package's price table
