"""Provider truth: what the providers' own rate-limit headers and quota errors say ends up in
the key's health, and the router believes it (OpenAI ``x-ratelimit-*``, Anthropic
``anthropic-ratelimit-*`` with RFC 3339 resets, Gemini per-day quota errors)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from quotaflow.adapters.anthropic import ADAPTER as ANTHROPIC
from quotaflow.adapters.gemini import ADAPTER as GEMINI
from quotaflow.adapters.openai import OpenAIAdapter
from quotaflow.engine import health as hl
from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider
from quotaflow.gateway import Gateway
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock, config
from quotaflow.types import ErrorKind

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z = 2025-12-31 16:00 in Los Angeles


def test_openai_headers_with_nothing_left_block_the_key_until_the_reset() -> None:
    info = OpenAIAdapter().rate_info(
        {
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-remaining-tokens": "900",
            "x-ratelimit-reset-tokens": "12ms",
        }
    )
    assert info is not None and info.requests_reset_s == 360.0
    h = hl.Health()
    hl.record_rate_info(h, info, NOW)
    assert hl.unavailable_reason(h, NOW + 10) == "provider reports no requests left in its window"
    assert hl.available_at(h, NOW + 10) == NOW + 360
    assert hl.unavailable_reason(h, NOW + 361) is None


def test_anthropic_rfc3339_resets_are_measured_from_the_response_date() -> None:
    info = ANTHROPIC.rate_info(
        {
            "date": "Thu, 01 Jan 2026 00:00:00 GMT",
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "12",
            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:05Z",
            "anthropic-ratelimit-tokens-limit": "96000",
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:42Z",
        }
    )
    assert info is not None
    assert (info.requests_remaining, info.requests_reset_s) == (12, 5.0)
    assert (info.tokens_limit, info.tokens_remaining, info.tokens_reset_s) == (96000, 0, 42.0)
    h = hl.Health()
    hl.record_rate_info(h, info, NOW)
    assert hl.unavailable_reason(h, NOW + 41) == "provider reports no tokens left in its window"
    assert hl.unavailable_reason(h, NOW + 42.5) is None


def _gemini_429(quota_id: str) -> bytes:
    violation = {"quotaMetric": "m", "quotaId": quota_id, "quotaValue": "250"}
    return orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
    ]}})  # fmt: skip


def test_gemini_per_day_quota_depletes_the_key_until_midnight_in_los_angeles(
    tmp_path: Path,
) -> None:
    per_day = GEMINI.classify_error(
        429, {}, _gemini_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    )
    assert per_day.kind is ErrorKind.QUOTA_EXHAUSTED
    assert (per_day.quota_window, per_day.quota_tz) == ("day", "America/Los_Angeles")
    per_minute = GEMINI.classify_error(
        429, {}, _gemini_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")
    )
    assert (per_minute.kind, per_minute.retry_after_s) == (ErrorKind.RATE_LIMITED, 37.0)
    assert per_minute.quota_window is None

    cfg = config({
        "providers": [{"name": "gemini", "keys": [{"id": "g", "secret": "k", "limits": [
            {"metric": "requests", "window": "month", "amount": 1000}]}]}],
    })  # fmt: skip
    gw = Gateway(cfg, ledger=SqliteLedger(tmp_path / "q.db"), clock=FrozenClock(NOW))
    key = gw.keys["g"]
    midnight_la = datetime(2026, 1, 1, 8, 0, tzinfo=UTC).timestamp()
    assert gw.booking.depleted_until(key, NOW, per_day) == midnight_la
    # Without a provider-named window: the key's own longest window (the month, in UTC).
    first_of_feb = datetime(2026, 2, 1, tzinfo=UTC).timestamp()
    assert gw.booking.depleted_until(key, NOW, None) == first_of_feb


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_router_skips_a_key_the_provider_says_is_empty(protocol: str, tmp_path: Path) -> None:
    """rpm=1 at the provider: after one request its headers say 0 left, and the next request
    goes straight to the other key instead of collecting a 429."""
    fake_cfg = FakeProviderConfig(
        protocol=protocol,  # type: ignore[arg-type]
        keys={"sk-a": KeyState(), "sk-b": KeyState()},
        rpm=1,
    )
    async with running_fake_provider(fake_cfg) as fake:
        base = fake.url + ("/v1" if protocol == "openai" else "")
        cfg = config({
            "settings": {"strategy": "priority", "max_wait_s": 0, "preferred_providers": []},
            "providers": [{"name": "p", "protocol": protocol, "base_url": base, "models": ["m"], "keys": [
                {"id": "a", "secret": "sk-a", "priority": 0, "limits": []},
                {"id": "b", "secret": "sk-b", "priority": 1, "limits": []},
            ]}],
        })  # fmt: skip
        gw = Gateway(cfg, ledger=SqliteLedger(tmp_path / "q.db"))
        await gw.start()
        try:
            body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            first = await gw.chat({**body, "max_tokens": 5})
            assert first.key.id == "a"
            rate = gw.health["a"].rate
            assert rate is not None and rate.requests_remaining == 0
            assert rate.requests_reset_s is not None and 0 < rate.requests_reset_s <= 60
            second = await gw.chat({**body, "max_tokens": 5})
            assert (second.key.id, len(second.attempts)) == ("b", 1)
        finally:
            await gw.close()
        assert fake.state.config.keys is not None
        assert fake.state.config.keys["sk-a"].requests == 1  # never sent the doomed request
