"""Operators' enable / disable of a key, applied at start against the key tester's verdicts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.gateway import Gateway
from quotaflow.runtime import build_gateway
from quotaflow.services.keys import KEY_STATE_SETTING, apply_key_states
from quotaflow.storage.base import LedgerRow
from quotaflow.testing import FrozenClock, config

NOW = 1_750_000_000.0


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = config({"providers": [{"name": "openai", "keys": [{"id": "k1", "secret": "sk-ks-1"}]}]})
    gw = build_gateway(cfg, tmp_path, clock=FrozenClock(NOW))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


async def dead_key_verdict(gw: Gateway, at: float) -> None:
    """The key tester found k1's key dead at ``at`` (restored as a disabled key)."""
    row = LedgerRow(
        request_id="probe-1", attempt=1, ts=at, provider="openai", key_id="k1",
        model="gpt-4o-mini", status="error", error_kind="auth", source="probe", detail="401",
    )  # fmt: skip
    await gw.ledger.append([row])
    await gw.restore_probe_health()
    assert gw.health["k1"].disabled_reason


async def set_state(gw: Gateway, state: str, at: float) -> None:
    store: Any = gw.ledger
    await store.set_setting(KEY_STATE_SETTING + "k1", f"{state}@{at}")


async def test_an_enable_after_the_dead_key_verdict_wins(gw: Gateway) -> None:
    await dead_key_verdict(gw, NOW - 100)
    await set_state(gw, "enabled", NOW - 50)
    await apply_key_states(gw)
    assert not gw.health["k1"].disabled_reason


async def test_a_dead_key_verdict_after_the_enable_wins(gw: Gateway) -> None:
    await set_state(gw, "enabled", NOW - 100)
    await dead_key_verdict(gw, NOW - 50)
    await apply_key_states(gw)
    assert gw.health["k1"].disabled_reason


async def test_a_disable_holds_and_no_state_needs_no_scan_of_the_verdicts(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[float | None] = []
    real = gw.ledger.probe_results

    async def counted(since: float | None = None) -> list[LedgerRow]:
        scans.append(since)
        return await real(since)

    monkeypatch.setattr(gw.ledger, "probe_results", counted)
    await apply_key_states(gw)  # nothing stored: the ledger is not scanned
    assert scans == [] and not gw.health["k1"].disabled_reason
    await set_state(gw, "disabled", NOW)
    await apply_key_states(gw)
    assert scans == [] and gw.health["k1"].disabled_reason == "disabled by an operator"
    await set_state(gw, "enabled", NOW + 1)
    await apply_key_states(gw)
    assert len(scans) == 1 and not gw.health["k1"].disabled_reason
