"""``quotaflow demo --scenario failover``: one key per protocol, the first two with small
one-time quotas; traffic moves OpenAI → Anthropic → Gemini and no request is refused."""

from __future__ import annotations

import ast
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
    summary = [line for line in out.stdout.splitlines() if line.startswith("demo ended:")]
    assert summary, out.stdout[-2000:]
    assert " 0 refused" in summary[-1]
    by_key = ast.literal_eval(summary[-1].split("by key: ", 1)[1])
    assert set(by_key) == {"openai-demo", "anthropic-demo", "gemini-demo"}
    assert all(n > 0 for n in by_key.values())

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
