"""Alerts: each crossing recorded once, not repeated while the level holds, nor after a restart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from quotaflow.engine import health as hl
from quotaflow.gateway import Gateway
from quotaflow.observability.logs import fields_of
from quotaflow.services.alerts import AlertMonitor, alerts_json
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock, config
from quotaflow.types import ErrorKind, Measure
from quotaflow.web.dashboard.snapshot import alert_severity

CFG = {
    "providers": [{
        "name": "openai",
        "keys": [
            {"id": "k1", "secret": "sk-a", "limits": [{"metric": "tokens", "window": "day", "amount": 1000}]},
            {"id": "k2", "secret": "sk-b", "limits": [{"metric": "tokens", "window": "day", "amount": 1000}]},
        ],
    }],
}  # fmt: skip


async def started(tmp_path: Path) -> Gateway:
    gw = Gateway(config(CFG), ledger=SqliteLedger(tmp_path / "q.db"), clock=FrozenClock())
    await gw.start()
    return gw


async def test_each_level_is_recorded_once_per_crossing(tmp_path: Path) -> None:
    gw = await started(tmp_path)
    try:
        mon = AlertMonitor(gw, gw.ledger, list)  # type: ignore[arg-type]
        await mon.load()
        k1 = gw.keys["k1"].limits
        now = gw.clock.now()

        async def charge(tokens: float) -> list[str]:
            await gw.counters.charge(k1, Measure(tokens, 1, 0), now, now)
            return [f"{a.subject} {a.level}" for a in await mon.check()]

        assert await charge(700) == []
        assert await charge(60) == ["key:k1/tokens/day 75%"]
        assert await charge(10) == []  # 77 %: the level holds
        assert await mon.check() == []
        assert await charge(200) == ["key:k1/tokens/day 95%"]  # jumped over 90 %: the highest
        await gw.reset_limits(k1)
        assert await mon.check() == []  # falling back is not an alert …
        assert await charge(800) == ["key:k1/tokens/day 75%"]  # … but the next crossing is

        restarted = AlertMonitor(gw, gw.ledger, list)  # type: ignore[arg-type]
        await restarted.load()
        assert await restarted.check() == []  # the level is persisted: no repeat
        rows = await gw.ledger.list_alerts()
        assert [r.level for r in rows] == ["75%", "95%", "75%"]
    finally:
        await gw.close()


async def test_key_disabled_provider_failing_and_all_exhausted(tmp_path: Path) -> None:
    gw = await started(tmp_path)
    try:
        mon = AlertMonitor(gw, gw.ledger, list)  # type: ignore[arg-type]
        await mon.load()
        now = gw.clock.now()
        hl.record_failure(gw.health["k1"], ErrorKind.AUTH, "invalid key", now)
        kinds = sorted(a.kind for a in await mon.check())
        assert kinds == ["key_invalid"]  # rejected by the provider: its own state
        gw.disable_key("k1", "disabled by an operator")
        assert sorted(a.kind for a in await mon.check()) == ["key_disabled"]
        for _ in range(3):
            hl.record_failure(gw.health["k2"], ErrorKind.SERVER_ERROR, "502 bad gateway", now)
        kinds = sorted(a.kind for a in await mon.check())
        assert kinds == ["all_exhausted", "provider_failing"]
        assert await mon.check() == []
    finally:
        await gw.close()


async def test_alerts_are_titled_in_words(tmp_path: Path) -> None:
    gw = await started(tmp_path)
    try:
        mon = AlertMonitor(gw, gw.ledger, list)  # type: ignore[arg-type]
        await mon.load()
        now = gw.clock.now()
        await gw.counters.charge(gw.keys["k1"].limits, Measure(900, 1, 0), now, now)
        hl.record_failure(gw.health.setdefault("k2", hl.Health()), ErrorKind.AUTH, "bad key", now)
        messages = [a.message for a in await mon.check()]
        assert "openai key k1: 90 % of its daily tokens (900 tokens of 1,000 tokens)" in messages
        assert "openai key k2 is invalid (the provider rejected it): bad key" in messages
    finally:
        await gw.close()


async def test_the_webhook_callback_hears_crossings_a_used_up_key_and_recoveries(
    tmp_path: Path,
) -> None:
    gw = await started(tmp_path)
    heard: list[tuple[str, str, str]] = []

    async def on_alert(row) -> None:
        heard.append((row.kind, row.subject, row.level))

    try:
        mon = AlertMonitor(gw, gw.ledger, list, on_alert=on_alert)  # type: ignore[arg-type]
        await mon.load()
        now = gw.clock.now()
        hl.record_failure(gw.health["k1"], ErrorKind.AUTH, "invalid key", now)
        hl.record_failure(
            gw.health["k2"], ErrorKind.QUOTA_EXHAUSTED, "quota", now, depleted_until=now + 60
        )
        await mon.check()
        assert ("key_invalid", "key:k1#invalid", "error") in heard  # rejected: its own state
        assert ("key_depleted", "key:k2#depleted", "100%") in heard
        hl.enable(gw.health["k1"])
        heard.clear()
        await mon.check()
        assert ("key_invalid", "key:k1#invalid", "recovered") in heard
    finally:
        await gw.close()


async def test_a_check_over_hundreds_of_limits_sees_the_last_and_lets_requests_in(
    tmp_path: Path,
) -> None:
    """The check goes through the limits in chunks with a turn of the event loop between
    them: a crossing in the last chunk is still found, and other work runs meanwhile."""
    import asyncio

    keys = [
        {"id": f"k{i}", "secret": f"sk-{i:04d}", "limits": [{"metric": "tokens", "window": "day", "amount": 1000}]}
        for i in range(300)
    ]  # fmt: skip
    cfg = {"providers": [{"name": "openai", "keys": keys}]}
    gw = Gateway(config(cfg), ledger=SqliteLedger(tmp_path / "q.db"), clock=FrozenClock())
    await gw.start()
    try:
        mon = AlertMonitor(gw, gw.ledger, list)  # type: ignore[arg-type]
        await mon.load()
        last = gw.keys["k299"].limits
        now = gw.clock.now()
        await gw.counters.charge(last, Measure(800, 1, 0), now, now)
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        found = [f"{a.subject} {a.level}" for a in await mon.check()]
        assert found == ["key:k299/tokens/day 75%"]
        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        before = turns
        assert await mon.check() == []  # nothing moved: nothing waits on storage either …
        other.cancel()
        assert turns - before >= 4  # … yet the loop was let go between chunks of 128
    finally:
        await gw.close()


async def test_a_key_disabled_by_an_operator_is_a_warning_saying_how_to_enable_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quotaflow.events")
    gw = await started(tmp_path)
    try:
        mon = AlertMonitor(gw, gw.ledger, list)  # type: ignore[arg-type]
        await mon.load()
        gw.disable_key("k1")
        [alert] = await mon.check()
        assert (alert.kind, alert.level) == ("key_disabled", "warning")
        assert alert_severity(alert.kind, alert.level) == "warning"
        [line] = [r for r in caplog.records if fields_of(r).get("event") == "key_disabled"]
        fields = fields_of(line)
        assert line.levelno == logging.WARNING and fields["level"] == "warning"
        assert "quotaflow keys enable k1" in fields["hint"]
        assert "refused" not in fields["hint"] and "secret" not in fields["hint"]
    finally:
        await gw.close()


def test_a_key_the_provider_refused_is_an_error_on_the_dashboard_a_disabled_one_a_warning() -> None:
    assert alert_severity("key_invalid", "error") == "error"
    assert alert_severity("key_disabled", "warning") == "warning"
    assert alert_severity("key_disabled", "error") == "warning"  # stored by an older version


async def test_an_alert_is_active_while_it_holds_and_over_after(tmp_path: Path) -> None:
    gw = await started(tmp_path)
    try:
        mon = AlertMonitor(gw, gw.ledger, list)  # type: ignore[arg-type]
        await mon.load()
        k1 = gw.keys["k1"].limits
        now = gw.clock.now()
        await gw.counters.charge(k1, Measure(800, 1, 0), now, now)
        await mon.check()  # 75 %
        await gw.counters.charge(k1, Measure(160, 1, 0), now, now)
        await mon.check()  # 95 %: the 75 % alert is over, replaced
        gw.health.setdefault("k2", hl.Health()).disabled_reason = "401 from the provider"
        await mon.check()

        async def listed() -> list[tuple[str, str, bool]]:
            rows = await gw.ledger.list_alerts()
            return [
                (d["kind"], d["level"], d["active"]) for d in await alerts_json(gw.ledger, rows)
            ]

        assert await listed() == [
            ("key_disabled", "warning", True),
            ("limit", "95%", True),
            ("limit", "75%", False),
        ]
        gw.health["k2"].disabled_reason = None  # enabled again
        await gw.reset_limits(k1)
        await mon.check()
        assert await listed() == [
            ("key_disabled", "warning", False),
            ("limit", "95%", False),
            ("limit", "75%", False),
        ]
    finally:
        await gw.close()
