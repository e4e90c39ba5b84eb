"""``quotaflow probe`` through the real entry point against the fake provider."""

from __future__ import annotations

import json
import sqlite3

from tests.cli.conftest import QF
from tests.e2e.procs import Proc


def config_3x3(url: str) -> dict:
    return {
        "providers": [{
            "name": "fake", "protocol": "openai", "base_url": url + "/v1", "models": ["m1", "m2", "m3"],
            "keys": [{"id": "good-1", "secret": "K1"}, {"id": "dead", "secret": "BAD"}, {"id": "good-2", "secret": "K2"}],
            "key_limits": [{"metric": "tokens", "window": "day", "amount": 100000}],
        }]
    }  # fmt: skip


def test_probe_3_keys_x_3_models_reports_exactly_the_dead_key(qf: QF, fake_openai: Proc) -> None:
    qf.write_config(config_3x3(fake_openai.url))
    run = qf("probe", "--json")
    assert run.code == 1, run.err  # a failed test is an operational failure
    doc = run.json()
    assert doc["summary"]["total"] == 9
    assert doc["summary"]["passed"] == 6
    assert doc["summary"]["failed"] == 3
    assert doc["summary"]["pass_rate"] == 66.7
    failed = {(r["key_id"], r["model"]) for r in doc["results"] if not r["ok"]}
    assert failed == {("dead", "m1"), ("dead", "m2"), ("dead", "m3")}
    assert all(
        r["error_kind"] == "auth" and r["http_status"] == 401 for r in doc["results"] if not r["ok"]
    )
    assert doc["summary"]["fastest"]["key_id"] in ("good-1", "good-2")
    assert "BAD" not in run.out and "K1" not in run.out  # secrets are masked
    written = json.loads((qf.home / "api-test-results.json").read_text())
    assert written["summary"] == doc["summary"]
    # the results went into the ledger, where the engine's health is rebuilt from
    db = sqlite3.connect(qf.home / "quotaflow.db")
    rows = db.execute(
        "SELECT key_id, status, error_kind FROM ledger WHERE source='probe'"
    ).fetchall()
    assert len(rows) == 9
    assert {r[0] for r in rows if r[1] == "error"} == {"dead"}


def test_probe_table_summary_and_filters(qf: QF, fake_openai: Proc) -> None:
    qf.write_config(config_3x3(fake_openai.url))
    run = qf("probe", "--models", "m2", "--provider", "fake", "--timeout", "5")
    assert run.code == 1
    assert "Total Tests: 3" in run.out
    assert "Passed: 2" in run.out
    assert "Failed: 1" in run.out
    assert "Pass Rate: 66.7%" in run.out
    assert "Fastest: fake - m2" in run.out


def test_probe_all_passing_exits_0_and_unknown_provider_exits_2(qf: QF, fake_openai: Proc) -> None:
    cfg = config_3x3(fake_openai.url)
    cfg["providers"][0]["keys"] = [{"id": "good-1", "secret": "K1"}]
    qf.write_config(cfg)
    assert qf("probe", "--models", "m1,m3").code == 0
    bad = qf("probe", "--provider", "nope")
    assert bad.code == 2
    assert "unknown provider" in bad.err
    assert qf("probe", "--models", "zzz").code == 2
