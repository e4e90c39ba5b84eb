"""``quotaflow alerts`` prints each alert raised with its time, marked open or over, and
--check looks at what holds now — on the data folder and against a server."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from quotaflow.cli.target import Server
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.storage.management import AlertRow
from tests.cli.conftest import QF, write_ledger

CONFIG = {
    "providers": [{
        "name": "openai", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m1"],
        "keys": [{"id": "alpha", "secret": "sk-alpha-aaaaaaaa1111"},
                 {"id": "bravo", "secret": "sk-bravo-bbbbbbbb2222"}],
    }]
}  # fmt: skip
T1 = datetime(2026, 3, 10, 9, 15, tzinfo=UTC).timestamp()
T2 = datetime(2026, 3, 10, 11, 40, tzinfo=UTC).timestamp()


def record(home: Path, alerts: list[tuple[AlertRow, float]], levels: dict[str, float]) -> None:
    """Alerts as the server's monitor records them, then each subject's level now."""

    async def main() -> None:
        ledger = SqliteLedger(home / "quotaflow.db")
        await ledger.open()
        try:
            for row, level in alerts:
                await ledger.add_alert(row, level)
            for subject, level in levels.items():
                await ledger.set_alert_level(subject, level)
        finally:
            await ledger.close()

    asyncio.run(main())


def test_past_alerts_show_their_time_and_whether_they_still_hold(qf: QF) -> None:
    qf.write_config(CONFIG)
    write_ledger(qf.home, [])
    bravo = AlertRow(
        T1, "key_disabled", "key:bravo#disabled", "error", "openai key bravo disabled: 401"
    )
    alpha = AlertRow(T2, "provider_failing", "provider:openai#failing", "error", "provider openai is failing: 500")  # fmt: skip
    # bravo was enabled again since (its level fell back to 0); openai still fails
    record(qf.home, [(bravo, 1.0), (alpha, 1.0)], {"key:bravo#disabled": 0.0})
    run = qf.inproc("alerts")
    assert run.code == 0, run.err
    assert re.search(r"2026-03-10 09:15 UTC\s+over\s+error\s+openai key bravo disabled", run.out), (
        run.out
    )
    assert re.search(
        r"2026-03-10 11:40 UTC\s+open\s+error\s+provider openai is failing", run.out
    ), run.out
    history = qf.inproc("alerts", "--json").json()["history"]
    assert [(h["subject"], h["active"]) for h in history] == [
        ("provider:openai#failing", True),
        ("key:bravo#disabled", False),
    ]


def server_doc(*active: bool) -> dict[str, Any]:
    alerts = [
        {"id": i, "timestamp": datetime.fromtimestamp(T1 + i * 60, UTC).isoformat(),
         "kind": "key_disabled", "subject": f"key:k{i}#disabled", "level": "error",
         "message": f"openai key k{i} disabled", "active": on}
        for i, on in enumerate(active)
    ]  # fmt: skip
    return {"success": True, "alerts": alerts, "count": len(alerts)}


@pytest.mark.parametrize(("active", "code"), [((False, False), 0), ((False, True), 1)])
def test_against_a_server_only_alerts_that_hold_are_current(
    qf: QF, monkeypatch: pytest.MonkeyPatch, active: tuple[bool, ...], code: int
) -> None:
    monkeypatch.setattr(Server, "call", lambda self, method, path, body=None: server_doc(*active))
    url = ("--url", "http://127.0.0.1:9")
    run = qf.inproc("alerts", *url, "--check", config=False)
    assert run.code == code, run.out + run.err
    # without a config, in this machine's time zone
    here = [datetime.fromtimestamp(T1 + i * 60, UTC).astimezone() for i in (0, 1)]
    stamps = [t.strftime("%Y-%m-%d %H:%M %Z") for t in here]
    assert re.search(rf"{stamps[0]}\s+over\s+error\s+openai key k0 disabled", run.out), run.out
    current = [ln for ln in run.out.splitlines() if ln.startswith("⚠")]
    assert current == ([f"⚠ openai key k1 disabled (since {stamps[1]})"] if code else [])
