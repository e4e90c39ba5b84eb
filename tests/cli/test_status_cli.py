"""``quotaflow status``: what each key is held to (plan, limits and their sources) and its exit
code (1 when no provider can serve), on the data folder."""

from __future__ import annotations

import re
import time

from tests.cli.conftest import QF, row, write_ledger


def provider(name: str, key_id: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "protocol": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "models": ["m1"],
        "keys": [{"id": key_id, "secret": f"sk-{key_id}-secret-0001"}],
        **extra,
    }


def test_no_provider_configured_exits_1(qf: QF) -> None:
    qf.write_config({"providers": []})
    run = qf.inproc("status")
    assert run.code == 1


def test_every_key_used_up_exits_1_and_one_usable_exits_0(qf: QF) -> None:
    once = [{"metric": "tokens", "window": "once", "amount": 1000}]
    qf.write_config({"providers": [provider("openai", "o1", key_limits=once)]})
    write_ledger(qf.home, [row(time.time() - 5, "o1", "openai", 1000)])
    assert qf.inproc("status").code == 1
    qf.write_config(
        {"providers": [provider("openai", "o1", key_limits=once), provider("extra", "e1")]}
    )
    assert qf.inproc("status").code == 0


def test_request_quotas_show_their_requests_and_limits_their_source(qf: QF) -> None:
    qf.write_config(
        {"providers": [provider("groq", "g1", preset="groq", plan="free"), provider("x", "x1")]}
    )
    write_ledger(qf.home, [row(time.time() - 5, "g1", "groq", 300) for _ in range(3)])
    doc = qf.inproc("status", "--json").json()
    groq, other = doc["providers"]
    assert (groq["quota_metric"], groq["quota_used"], groq["quota_total"]) == (
        "requests",
        3,
        14_400,
    )
    assert other["quota_metric"] is None
    text = qf.inproc("status").out
    assert "3 requests" in text and "14,400 requests" in text
    assert "no limit" in text
    assert "groq key g1: free plan, 14,400 requests a day (free-plan preset)" in text
    assert "x key x1: paid plan, no limit" in text
    assert "secret-0001" not in text


def test_a_provider_with_every_key_disabled_says_so_and_why(qf: QF) -> None:
    limits = [{"metric": "tokens", "window": "day", "amount": 1000}]
    off = provider("openai", "o1", key_limits=limits)
    off["keys"] = [{"id": "o1", "secret": "sk-o1-secret-0001", "enabled": False}]
    qf.write_config({"providers": [off]})
    run = qf.inproc("status")
    assert run.code == 1
    cells = next(line for line in run.out.splitlines() if "openai" in line and "1,000" in line)
    assert "DISABLED" in cells and "DEPLETED" not in cells
    assert "[unavailable: disabled by an operator]" in run.out  # the reason, brackets and all
    assert "health: critical — No key can serve (1 disabled)" in run.out
    doc = qf.inproc("status", "--json").json()
    assert doc["providers"][0]["reason"] == "no key can serve (o1: disabled by an operator)"


def test_a_spend_limit_under_a_cent_keeps_its_digits(qf: QF) -> None:
    """A key limited to $0.0001 a day: not '$0.00' on the key line, in the table or the key
    list (nor '0.0001 $', the number then the sign)."""
    spend = [{"metric": "cost", "window": "day", "amount": 0.0001}]
    qf.write_config({"providers": [provider("openai", "o1", key_limits=spend)]})
    run = qf.inproc("status")
    assert run.code == 0, run.err
    assert "openai key o1: paid plan, $0.0001 a day (config)" in run.out
    # The provider's row: used, quota, left.
    assert re.search(r"\$0\.00 *│ *\$0\.0001 *│ *\$0\.0001 *│", run.out), run.out
    listed = qf.inproc("keys", "list")
    assert "$0.0001/day" in listed.out and "0.0001 $" not in listed.out
