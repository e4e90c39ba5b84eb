"""Key events in the log, said when they happen: a rate-limited key cools for the provider's
Retry-After, a rejected key (401/403) turns invalid once, and an operator enables it again —
against an in-process fake provider, through the runtime ``serve`` starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from quotaflow.fake_provider import running_fake_provider
from quotaflow.fake_provider.faults import Fault
from quotaflow.gateway import CallContext
from quotaflow.runtime import Runtime, build_gateway
from quotaflow.services.keys import set_key_state
from quotaflow.testing import config

SECRETS = ("sk-keyevents-0001", "sk-keyevents-0002")
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def cfg(base_url: str) -> dict:
    return {
        "settings": {"strategy": "priority", "max_wait_s": 0},
        "providers": [
            {
                "name": "openai",
                "base_url": base_url,
                "models": [{"name": "gpt-4o-mini", "input": 0.15, "output": 0.6}],
                "keys": [
                    {"id": "k1", "secret": SECRETS[0], "priority": 0},
                    {"id": "k2", "secret": SECRETS[1], "priority": 1},
                ],
            }
        ],
    }


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "quotaflow.events" and getattr(r, "fields", {}).get("event") == name
    ]


async def test_a_rate_limited_key_cools_for_the_retry_after_the_provider_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quotaflow")
    async with running_fake_provider(protocol="openai") as fake:
        fake.state.faults.add(Fault("status", key=SECRETS[0], status=429, retry_after=7))
        gw = build_gateway(config(cfg(fake.base_url)), tmp_path)
        await gw.start()
        try:
            out = await gw.chat(BODY, CallContext())
        finally:
            await gw.close()
    assert out.key.id == "k2"
    (line,) = events(caplog, "key_cooling")
    assert line.fields["retry_after_s"] == 7
    assert "for 7 s (its Retry-After)" in line.getMessage()
    assert line.fields["subject"] == "openai/k1" and line.fields["hint"]


async def test_a_rejected_key_is_logged_once_as_invalid_and_once_when_enabled_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quotaflow")
    async with running_fake_provider(protocol="openai") as fake:
        fake.state.faults.add(Fault("status", key=SECRETS[0], status=401))
        gw = build_gateway(config(cfg(fake.base_url)), tmp_path)
        rt = Runtime.build(gw, tmp_path)
        await rt.start()
        try:
            for _ in range(3):
                assert (await gw.chat(BODY, CallContext())).key.id == "k2"
            await rt.alerts.check()  # the alert is recorded (and sent to webhooks) …
            assert [a.kind for a in await gw.ledger.list_alerts(10)] == ["key_invalid"]
            (invalid,) = events(caplog, "key_invalid")  # not a second line from the alert
            assert invalid.levelno == logging.WARNING
            assert "quotaflow keys enable k1" in invalid.fields["hint"]
            assert events(caplog, "key_enabled") == []

            await set_key_state(gw, "k1", True)
            (enabled,) = events(caplog, "key_enabled")
            assert "enabled again (it was invalid)" in enabled.getMessage()
            assert (await gw.chat(BODY, CallContext())).key.id == "k1"
            await set_key_state(gw, "k1", True)  # already enabled: nothing to say
            assert len(events(caplog, "key_enabled")) == 1
        finally:
            await rt.close()
    text = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    assert not any(secret in text for secret in SECRETS)
