"""``quotaflow keys list`` and ``quotaflow status`` say what each key used and whether it can
take requests, whatever its limits, and agree on where a key comes from."""

from __future__ import annotations

import pytest

from quotaflow.cli.keys import key_state
from tests.cli.conftest import QF, row, write_ledger

CONFIG = {
    "providers": [{
        "name": "openai", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m1"],
        "keys": [
            {"id": "alpha", "secret": "sk-alpha-aaaaaaaa1111",
             "limits": [{"metric": "tokens", "window": "day", "amount": 200000}]},
            {"id": "bravo", "secret": "sk-bravo-bbbbbbbb2222"},
        ],
    }]
}  # fmt: skip


def table_row(out: str, key_id: str) -> str:
    return next(ln for ln in out.splitlines() if ln.strip("│ ").startswith(key_id + " "))


def test_a_key_without_a_limit_shows_its_use_and_no_limit(qf: QF) -> None:
    qf.write_config(CONFIG)
    write_ledger(qf.home, [row(1.0 + i, "bravo", "openai", 1000) for i in range(2)])
    doc = {k["key_id"]: k for k in qf.inproc("keys", "list", "--json").json()["keys"]}
    assert doc["bravo"]["quota_metric"] is None
    assert doc["bravo"]["booked"] == {"requests": 2, "total_tokens": 2000, "cost_usd": 0.0}
    assert doc["alpha"]["quota_window"] == "day"
    out = qf.inproc("keys", "list").out
    bravo = table_row(out, "bravo")
    assert "2,000 (all time)" in bravo and "no limit" in bravo, out
    assert "200,000 tokens/day" in table_row(out, "alpha"), out


def test_the_state_column_says_why_a_key_takes_no_requests(qf: QF) -> None:
    qf.write_config(CONFIG)
    write_ledger(qf.home, [])
    assert qf.inproc("keys", "disable", "bravo").code == 0
    out = qf.inproc("keys", "list").out
    assert "DISABLED" in table_row(out, "bravo") and "OK" in table_row(out, "alpha"), out


@pytest.mark.parametrize(
    ("reason", "word"),
    [
        ("disabled by an operator", "DISABLED"),
        ("disabled (5 failures in a row)", "DISABLED"),
        ("quota exhausted at the provider", "DEPLETED"),
        ("quota used up", "DEPLETED"),
        ("provider reports no tokens left in its window", "RATE-LIMITED"),
        ("cooling down: 429 from the provider", "COOLING"),
        ("circuit half-open: a probe request is in flight", "UNAVAILABLE"),
    ],
)
def test_key_state_words(reason: str, word: str) -> None:
    assert key_state({"state": "ok", "available": False, "reason": reason}) == word
    assert key_state({"state": "warning", "available": True, "reason": None}) == "WARNING"
    assert key_state({"state": "invalid", "available": False, "reason": reason}) == "INVALID"


def test_status_and_keys_list_agree_a_key_was_added(qf: QF) -> None:
    qf.write_config(CONFIG)
    write_ledger(qf.home, [])
    added = qf.inproc("keys", "add", "openai", "sk-test-badkey-999999", "--quota", "100000")
    assert added.code == 0, added.err
    assert "added" in table_row(qf.inproc("keys", "list").out, "openai-1")
    status = qf.inproc("status").out
    line = next(ln for ln in status.splitlines() if "key openai-1:" in ln)
    assert "(added)" in line and "(config)" not in line, status
    doc = qf.inproc("status", "--json").json()
    (key,) = [k for k in doc["providers"][0]["keys"] if k["key_id"] == "openai-1"]
    assert [lim["source"] for lim in key["limits"]] == ["added"]
