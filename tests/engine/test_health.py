"""Health of a key: the circuit, cool-downs, 429s, auth failures and provider-side depletion."""

from __future__ import annotations

import pytest

from quotaflow.engine.health import (
    MAX_COOLDOWN_S,
    Health,
    available_at,
    begin_attempt,
    record_failure,
    record_rate_info,
    record_success,
    unavailable_reason,
)
from quotaflow.types import ErrorKind, RateInfo

NOW = 1_000_000.0


def fail(h: Health, now: float = NOW, kind: ErrorKind = ErrorKind.SERVER_ERROR, **kw) -> None:
    record_failure(h, kind, "upstream said no", now, **kw)


def open_circuit(h: Health, now: float = NOW) -> None:
    for _ in range(3):
        fail(h, now)


def test_circuit_stays_closed_below_the_threshold() -> None:
    h = Health()
    fail(h)
    fail(h)
    assert h.circuit == "closed"
    assert unavailable_reason(h, NOW) is None
    assert (h.failures, h.consecutive_failures) == (2, 2)


def test_circuit_opens_at_the_threshold_for_the_cooldown() -> None:
    h = Health()
    open_circuit(h)
    assert h.circuit == "open"
    assert h.cooldown_until == NOW + 30
    assert unavailable_reason(h, NOW + 29.9) == (
        "cooling down: circuit open after 3 failures (server_error)"
    )
    assert available_at(h, NOW + 1) == NOW + 30


def test_custom_threshold_and_cooldown() -> None:
    h = Health()
    fail(h, failure_threshold=1, cooldown_s=5)
    assert h.circuit == "open"
    assert h.cooldown_until == NOW + 5


def test_half_open_lets_exactly_one_probe_through() -> None:
    h = Health()
    open_circuit(h)
    assert unavailable_reason(h, NOW + 30) is None
    assert h.circuit == "half_open"
    begin_attempt(h)
    assert h.probe_in_flight
    assert unavailable_reason(h, NOW + 31) == "circuit half-open: a probe request is in flight"
    assert available_at(h, NOW + 31) is None


def test_a_successful_probe_closes_the_circuit() -> None:
    h = Health()
    open_circuit(h)
    unavailable_reason(h, NOW + 30)
    begin_attempt(h)
    record_success(h, 120.0, NOW + 31)
    assert (h.circuit, h.open_count, h.consecutive_failures, h.probe_in_flight) == (
        "closed",
        0,
        0,
        False,
    )
    assert unavailable_reason(h, NOW + 31) is None
    # A fresh burst starts over at the base cool-down.
    open_circuit(h, NOW + 40)
    assert h.cooldown_until == NOW + 40 + 30


def test_a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_cap() -> None:
    h = Health()
    open_circuit(h)
    now = NOW
    spans = []
    for _ in range(6):
        now = h.cooldown_until
        assert unavailable_reason(h, now) is None
        begin_attempt(h)
        fail(h, now)
        assert h.circuit == "open"
        spans.append(h.cooldown_until - now)
    assert spans == [60, 120, 240, MAX_COOLDOWN_S, MAX_COOLDOWN_S, MAX_COOLDOWN_S]


def test_failures_of_requests_already_in_flight_do_not_escalate_an_open_circuit() -> None:
    """Five requests sent before the outage fail together: the circuit opens once, for 30 s."""
    h = Health()
    for _ in range(5):
        fail(h, NOW)
    assert h.circuit == "open"
    assert h.open_count == 1
    assert h.cooldown_until == NOW + 30
    # Its probe failing is the first re-open: 60 s.
    unavailable_reason(h, NOW + 30)
    begin_attempt(h)
    fail(h, NOW + 30)
    assert h.cooldown_until == NOW + 30 + 60


def test_request_faults_do_not_count_against_the_key() -> None:
    h = Health()
    for kind in (
        ErrorKind.BAD_REQUEST,
        ErrorKind.CONTEXT_TOO_LONG,
        ErrorKind.CONTENT_FILTERED,
        ErrorKind.NOT_FOUND,
    ):
        for _ in range(5):
            fail(h, kind=kind)
    assert (h.failures, h.consecutive_failures, h.circuit) == (0, 0, "closed")
    assert h.last_error_kind == "not_found"
    assert unavailable_reason(h, NOW) is None


def test_rate_limited_cools_down_for_retry_after_without_opening_the_circuit() -> None:
    h = Health()
    fail(h, kind=ErrorKind.RATE_LIMITED, retry_after_s=12)
    assert h.circuit == "closed"
    assert unavailable_reason(h, NOW + 11) == (
        "cooling down: rate limited by the provider (retry after 12s)"
    )
    assert available_at(h, NOW) == NOW + 12
    assert unavailable_reason(h, NOW + 12) is None
    h2 = Health()
    fail(h2, kind=ErrorKind.RATE_LIMITED)  # no Retry-After: one second
    assert h2.cooldown_until == NOW + 1


def test_a_shorter_cooldown_never_shortens_a_longer_one() -> None:
    h = Health()
    open_circuit(h)
    fail(h, NOW + 1, kind=ErrorKind.RATE_LIMITED, retry_after_s=2)
    assert h.cooldown_until == NOW + 30
    assert h.cooldown_reason is not None and h.cooldown_reason.startswith("circuit open")


def test_server_error_with_retry_after_cools_down_below_the_threshold() -> None:
    h = Health()
    fail(h, retry_after_s=7)
    assert h.circuit == "closed"
    assert unavailable_reason(h, NOW + 6) == "cooling down: server_error: retry after 7s"


def test_auth_failure_disables_the_key_until_an_operator_enables_it() -> None:
    h = Health()
    record_failure(h, ErrorKind.AUTH, "Incorrect API key provided: sk-…abcd", NOW)
    assert h.disabled_reason == "invalid: Incorrect API key provided: sk-…abcd"
    assert unavailable_reason(h, NOW + 10**6) == h.disabled_reason  # invalid until enabled
    assert available_at(h, NOW) is None
    h.disabled_reason = None  # the operator's "enable"
    assert unavailable_reason(h, NOW + 1) is None


def test_quota_exhausted_until_depleted_until() -> None:
    h = Health()
    fail(h, kind=ErrorKind.QUOTA_EXHAUSTED, depleted_until=NOW + 900)
    assert h.circuit == "closed"
    assert unavailable_reason(h, NOW + 899) == "quota exhausted at the provider"
    assert available_at(h, NOW) == NOW + 900
    assert unavailable_reason(h, NOW + 900) is None
    assert h.depleted_until is None
    h2 = Health()
    fail(h2, kind=ErrorKind.QUOTA_EXHAUSTED)  # no reset known: an hour
    assert h2.depleted_until == NOW + 3600


def test_available_at_waits_for_the_last_blocker() -> None:
    h = Health()
    fail(h, kind=ErrorKind.RATE_LIMITED, retry_after_s=30)
    fail(h, kind=ErrorKind.QUOTA_EXHAUSTED, depleted_until=NOW + 600)
    assert available_at(h, NOW) == NOW + 600
    assert available_at(h, NOW + 700) is None


def test_rate_headers_block_until_their_reset() -> None:
    h = Health()
    record_rate_info(h, RateInfo(tokens_limit=1000, tokens_remaining=0, tokens_reset_s=3), NOW)
    assert unavailable_reason(h, NOW + 2) == "provider reports no tokens left in its window"
    assert available_at(h, NOW) == NOW + 3
    assert unavailable_reason(h, NOW + 3) is None
    record_rate_info(h, RateInfo(requests_remaining=5, requests_reset_s=3), NOW)
    assert unavailable_reason(h, NOW) is None


def test_success_updates_the_latency_ewma_and_counters() -> None:
    h = Health()
    record_success(h, 100.0, NOW, ttfb_ms=40.0)
    assert (h.latency_ewma_ms, h.ttfb_ewma_ms) == (100.0, 40.0)
    record_success(h, 200.0, NOW + 1)
    assert h.latency_ewma_ms == pytest.approx(120.0)
    assert h.ttfb_ewma_ms == 40.0
    fail(h, NOW + 2)
    assert h.success_rate == pytest.approx(2 / 3)
    assert Health().success_rate == 1.0
    assert h.last_success == NOW + 1
    assert h.last_error == NOW + 2


def test_error_message_is_truncated() -> None:
    h = Health()
    record_failure(h, ErrorKind.SERVER_ERROR, "x" * 1000, NOW)
    assert h.last_error_message is not None and len(h.last_error_message) == 300
