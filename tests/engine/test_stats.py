"""Per key × model statistics: cumulative counts, time-decayed evidence, latency, quality."""

from __future__ import annotations

import pytest

from quotaflow.engine.stats import (
    LATENCY_WINDOW,
    ModelStats,
    Outcome,
    SessionTotals,
    decayed_counts,
    observe,
    observe_quality,
    reliability,
    to_json,
)

T0 = 1_000_000.0
HL = 60.0


def fresh() -> ModelStats:
    return ModelStats("groq", "groq-1", "llama-3.3-70b-versatile")


def test_a_fresh_record_is_untested_with_a_neutral_reliability() -> None:
    s = fresh()
    assert s.status == "untested"
    assert s.success_rate is None
    assert reliability(s, T0, HL) == 0.5
    assert reliability(None, T0, HL) == 0.5
    assert s.to_seed004() == {
        "status": "untested", "avgResponseTime": None, "successCount": 0, "failCount": 0,
        "totalTokensUsed": 0, "qualityScore": None, "lastSuccess": None, "lastError": None,
    }  # fmt: skip


def test_outcomes_fill_the_seed004_fields() -> None:
    s = fresh()
    observe(s, Outcome(True, 1000.0, tokens=120), T0, HL)
    observe(s, Outcome(True, 1468.0, tokens=80), T0 + 1, HL)
    observe(s, Outcome(False, error_kind="server_error", error="server_error: 503"), T0 + 2, HL)
    assert s.status == "failing"
    assert s.to_seed004() == {
        "status": "failing", "avgResponseTime": 1234, "successCount": 2, "failCount": 1,
        "totalTokensUsed": 200, "qualityScore": None, "lastSuccess": T0 + 1,
        "lastError": "server_error: 503",
    }  # fmt: skip
    observe(s, Outcome(True, 900.0), T0 + 3, HL)
    assert s.status == "working"
    assert s.success_rate == pytest.approx(3 / 4)


def test_evidence_halves_every_half_life() -> None:
    s = fresh()
    for _ in range(8):
        observe(s, Outcome(False, error_kind="server_error"), T0, HL)
    assert decayed_counts(s, T0, HL) == (0.0, 8.0)
    assert decayed_counts(s, T0 + 60, HL)[1] == pytest.approx(4.0)
    assert decayed_counts(s, T0 + 180, HL)[1] == pytest.approx(1.0)
    # Old failures fade: the same key × model is back near "unknown" after a few half-lives.
    assert reliability(s, T0, HL) == pytest.approx(1 / 10)
    assert reliability(s, T0 + 600, HL) == pytest.approx(0.5, abs=0.01)
    # The cumulative count does not fade.
    assert s.fail_count == 8


def test_recent_outcomes_outweigh_old_ones() -> None:
    s = fresh()
    for i in range(20):
        observe(s, Outcome(True, 300.0), T0 + i, HL)
    for i in range(5):
        observe(s, Outcome(False, error_kind="timeout"), T0 + 120 + i, HL)
    # 20 successes two half-lives ago weigh about 5: five fresh failures balance them.
    succ, fail = decayed_counts(s, T0 + 125, HL)
    assert fail > 4.5
    assert succ < 6.0
    assert reliability(s, T0 + 125, HL) < 0.6
    assert s.success_rate == pytest.approx(20 / 25)


def test_request_faults_are_not_held_against_the_key_model() -> None:
    s = fresh()
    for kind in ("bad_request", "context_too_long", "content_filtered", "not_found"):
        observe(s, Outcome(False, error_kind=kind, error=kind), T0, HL)
    assert s.fail_count == 0
    assert decayed_counts(s, T0, HL) == (0.0, 0.0)
    assert s.last_error == "not_found"


def test_latency_ewma_p95_and_ttft() -> None:
    s = fresh()
    for i in range(100):
        observe(s, Outcome(True, 100.0 + i, ttft_ms=50.0), T0 + i, HL)
    assert len(s.latencies) == LATENCY_WINDOW
    # The p95 of the last 64 latencies (136 … 199).
    assert s.latency_p95_ms == 196.0
    assert s.latency_ewma_ms is not None and 190.0 < s.latency_ewma_ms < 199.0
    assert s.ttft_ewma_ms == pytest.approx(50.0)
    # Failures do not move the latency view.
    observe(s, Outcome(False, 99_999.0, error_kind="timeout"), T0 + 200, HL)
    assert s.latency_p95_ms == 196.0


def test_quality_is_a_running_mean_and_a_failed_task_counts_zero() -> None:
    s = fresh()
    assert observe_quality(s, 0.9) == pytest.approx(0.9)
    assert observe_quality(s, 0.6) == pytest.approx(0.75)
    assert observe_quality(s, 0.9, success=False) == pytest.approx(0.5)
    assert s.quality_samples == 3
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="between 0 and 1"):
            observe_quality(s, bad)
    assert s.quality_samples == 3


def test_a_record_survives_its_round_trip() -> None:
    s = fresh()
    observe(s, Outcome(True, 250.0, ttft_ms=80.0, tokens=40), T0, HL)
    observe(s, Outcome(False, error_kind="rate_limited", error="429"), T0 + 5, HL)
    observe_quality(s, 0.8)
    back = ModelStats.from_record(s.to_record())
    assert back.to_record() == s.to_record()
    assert to_json(back, T0 + 5, HL) == to_json(s, T0 + 5, HL)
    kept = 0.5 ** (5 / 60)  # the success, five seconds older than the failure
    assert to_json(s, T0 + 5, HL)["reliability"] == pytest.approx((kept + 1) / (kept + 3), abs=1e-4)


def test_session_totals_give_seed004s_summary() -> None:
    t = SessionTotals()
    assert t.summary() == {
        "requests": 0, "successes": 0, "failures": 0, "totalTokens": 0, "successRate": 0.0,
    }  # fmt: skip
    for _ in range(45):
        t.book(True, 2_000)
    t.book(False)
    t.book(False, 0)
    assert t.summary() == {
        "requests": 47, "successes": 45, "failures": 2, "totalTokens": 90_000,
        "successRate": 0.957,
    }  # fmt: skip


def test_evidence_holds_at_most_a_window_of_outcomes() -> None:
    """However long the history, the last ``window`` outcomes decide: a run of failures
    after a thousand successes moves the estimate within a few calls."""
    s = fresh()
    for _ in range(1000):
        observe(s, Outcome(True, 200.0), T0, HL, window=12)
    assert sum(decayed_counts(s, T0, HL)) == pytest.approx(12.0)
    for _ in range(6):
        observe(s, Outcome(False, error_kind="server_error"), T0, HL, window=12)
    assert sum(decayed_counts(s, T0, HL)) == pytest.approx(12.0)
    assert reliability(s, T0, HL) < 0.7
    assert s.success_count == 1000  # the cumulative view keeps everything
