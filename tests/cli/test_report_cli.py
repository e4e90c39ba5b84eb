"""``quotaflow report`` through the real entry point: every export parses back to the ledger's totals."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import QF, row, write_ledger

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
CONFIG = {
    "providers": [
        {"name": "groq", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m1", "m2"],
         "keys": [{"id": "groq-1", "secret": "gsk-one-aaaa"}, {"id": "groq-2", "secret": "gsk-two-bbbb"}],
         "key_limits": [{"metric": "tokens", "window": "day", "amount": 14400}]},
        {"name": "cohere", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["c1"],
         "keys": [{"id": "cohere-1", "secret": "co-three-cccc"}],
         "key_limits": [{"metric": "tokens", "window": "month", "amount": 5000000}]},
    ]
}  # fmt: skip


@pytest.fixture
def ledger(qf: QF) -> QF:
    qf.write_config(CONFIG)
    rows = []
    for i in range(40):
        key, prov = [("groq-1", "groq"), ("groq-2", "groq"), ("cohere-1", "cohere")][i % 3]
        rows.append(
            row(
                T0 - 86400 * (i % 4) - 60 * i,
                key,
                prov,
                100 + 7 * i,
                agent=f"agent-{i % 2}",
                model="c1" if prov == "cohere" else f"m{1 + i % 2}",
                cost_usd=0.001 * i,
            )
        )
    rows.append(row(T0 - 30, "groq-1", "groq", 0, status="error", error_kind="server_error"))
    write_ledger(qf.home, rows)
    return qf


def ledger_totals(home: Path, where: str = "1=1") -> tuple[int, int, float]:
    db = sqlite3.connect(home / "quotaflow.db")
    t, r, c = db.execute(
        f"SELECT SUM(total_tokens), SUM(requests), SUM(cost_usd) FROM ledger WHERE {where}"
    ).fetchone()
    return int(t), int(r), float(c)


@pytest.mark.parametrize("group", ["key", "day"])
def test_exports_in_three_formats_match_the_ledger(ledger: QF, tmp_path: Path, group: str) -> None:
    tokens, requests, cost = ledger_totals(ledger.home)
    for ext in ("json", "csv", "txt"):
        path = tmp_path / f"report-{group}.{ext}"
        run = ledger("report", "--group-by", group, "--export", str(path), "--now", str(T0 + 60))
        assert run.code == 0, run.err
        text = path.read_text()
        assert text.endswith("\n"), ext  # a final newline, in every format
        if ext == "json":
            doc = json.loads(text)
            got = (
                doc["totals"]["total_tokens"],
                doc["totals"]["requests"],
                doc["totals"]["cost_usd"],
            )
            assert sum(g["total_tokens"] for g in doc["groups"]) == tokens
        elif ext == "csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            total = rows[-1]
            assert total[group] == "TOTAL"
            got = (int(total["total_tokens"]), int(total["requests"]), float(total["cost_usd"]))
            assert sum(int(r["total_tokens"]) for r in rows[:-1]) == tokens
        else:
            line = next(ln for ln in text.splitlines() if ln.split() and ln.split()[0] == "TOTAL")
            cells = line.split()
            got = (int(cells[6]), int(cells[2]), float(cells[7]))
        assert got[0] == tokens and got[1] == requests
        assert got[2] == pytest.approx(cost, abs=1e-6)


def test_json_groups_since_until_and_errors(ledger: QF) -> None:
    run = ledger(
        "report",
        "--json",
        "--group-by",
        "key",
        "--since",
        "2026-03-10",
        "--until",
        str(T0 + 1),
        "--now",
        str(T0 + 60),
    )
    assert run.code == 0, run.err
    doc = run.json()
    tokens, requests, _ = ledger_totals(
        ledger.home, f"ts >= {datetime(2026, 3, 10, tzinfo=UTC).timestamp()} AND ts < {T0 + 1}"
    )
    assert doc["totals"]["total_tokens"] == tokens
    assert doc["totals"]["requests"] == requests
    assert doc["totals"]["errors"] == 1
    assert {g["group"] for g in doc["groups"]} == {"groq-1", "groq-2", "cohere-1"}


def test_lifespan_estimate_per_provider_and_total(ledger: QF) -> None:
    run = ledger("report", "--json", "--avg-tokens", "10000", "--now", str(T0 + 60))
    doc = run.json()
    life = {p["provider"]: p for p in doc["lifespan"]["providers"]}
    cohere = next(p for p in doc["providers"] if p["provider"] == "cohere")
    # seed 002: remaining / tokens per day
    assert life["cohere"]["days"] == pytest.approx(cohere["remaining"] / 10000)
    # groq: 2 keys × 14,400 a day cover 10,000 a day: it resets before it runs out
    assert life["groq"]["unlimited"] is True
    assert doc["lifespan"]["continuous"] is True
    assert doc["lifespan"]["total_days"] == pytest.approx(cohere["remaining"] / 10000)


def test_compact_and_bad_options(ledger: QF, tmp_path: Path) -> None:
    run = ledger("report", "--compact", "--now", str(T0 + 60))
    assert run.code == 0
    assert "TOTAL" in run.out and "groq" in run.out
    assert ledger("report", "--export", str(tmp_path / "r.pdf")).code == 2
    assert ledger("report", "--since", "yesterday-ish").code == 2
    assert ledger("report", "--group-by", "colour").code == 2


def test_compact_keeps_every_report_total_and_deletes_old_rows(ledger: QF) -> None:
    now = str(T0 + 60)
    groups = ("provider", "key", "agent", "model", "day")

    def reports() -> dict[str, Any]:
        out = {}
        for g in groups:
            run = ledger("report", "--json", "--group-by", g, "--now", now)
            assert run.code == 0, run.err
            doc = run.json()
            out[g] = (doc["groups"], doc["totals"], doc["request_outcomes"])
        return out

    before = reports()
    rows_before = ledger_totals(ledger.home)
    none = ledger("compact", "--now", now)
    assert none.code == 2 and "ledger_retention_days" in none.err  # nothing says how old
    run = ledger("compact", "--older-than", "2", "--now", now)
    assert run.code == 0, run.err
    assert run.out.startswith("compacted ") and "totals kept" in run.out
    assert int(run.out.split()[1]) > 0
    db = sqlite3.connect(ledger.home / "quotaflow.db")
    (oldest,) = db.execute("SELECT MIN(ts) FROM ledger").fetchone()
    assert oldest >= (T0 + 60 - 2 * 86400) // 86400 * 86400
    assert ledger_totals(ledger.home) != rows_before  # the rows went …
    assert reports() == before  # … every report's totals stayed


def test_read_commands_refuse_a_missing_data_folder_and_create_none(qf: QF) -> None:
    qf.write_config(CONFIG)
    server = {"QUOTAFLOW_URL": "http://127.0.0.1:9"}  # report has no --url: it is not used
    for args, env in (
        (("report",), server),
        (("report", "--export", str(qf.home.parent / "r.csv")), {}),
        (("forecast",), {}),
        (("alerts",), {}),
    ):
        run = qf.inproc(*args, env=env)
        assert run.code == 2, (args, run.out)
        assert f"no data folder at {qf.home}" in run.err and "--home" in run.err, run.err
        assert not qf.home.exists()
    assert "--url" in qf.inproc("alerts").err  # alerts can ask a server instead
    assert "does not use the server at $QUOTAFLOW_URL" in qf.inproc("report", env=server).err
    qf.home.mkdir()  # a folder without a ledger: still none is made
    run = qf.inproc("report")
    assert run.code == 2 and f"no ledger in {qf.home}" in run.err
    assert list(qf.home.iterdir()) == []
