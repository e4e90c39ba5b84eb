"""Strategies ``learned`` (seed 004's score) and ``bandit`` (Thompson sampling + bounded
exploration) over candidates carrying their key × model statistics."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from quotaflow.config.load import strategy_settings
from quotaflow.config.schema import LearnedWeights, SettingsSpec
from quotaflow.engine.candidates import Candidate, RequestFacts
from quotaflow.engine.health import Health, begin_attempt, record_failure, unavailable_reason
from quotaflow.engine.reservation import Plan
from quotaflow.engine.stats import ModelStats, Outcome, observe, observe_quality
from quotaflow.engine.strategies import STRATEGIES, Scored, rank
from quotaflow.engine.strategies.bandit import bandit
from quotaflow.engine.strategies.base import LearnedWeights as Weights
from quotaflow.engine.strategies.base import StrategySettings
from quotaflow.engine.strategies.learned import learned, recency, speed
from quotaflow.testing import deployment, key, model
from quotaflow.types import ErrorKind, State

NOW = 1_000_000.0
S = StrategySettings()
FACTS = RequestFacts(prompt_tokens=100, max_tokens=100)


def stats(
    name: str, *, ok: int = 0, fail: int = 0, latency_ms: float = 500.0,
    quality: float | None = None, last_success_age_s: float = 0.0,
) -> ModelStats:  # fmt: skip
    s = ModelStats(name, name, "m")
    for i in range(fail):
        observe(s, Outcome(False, error_kind="server_error"), NOW - 1 - i, 60.0, 1e9)
    for _ in range(ok):
        observe(s, Outcome(True, latency_ms), NOW - last_success_age_s, 60.0, 1e9)
    if quality is not None:
        observe_quality(s, quality)
    return s


def cand(name: str, st: ModelStats | None = None, *, health: Health | None = None) -> Candidate:
    return Candidate(
        deployment(name, model("m")), key(name, name), (), Plan((), 100, 100, False), (),
        State.OK, 1.0, False, health or Health(), {}, 0.0, st, NOW,
    )  # fmt: skip


def names(ranked: list[Scored]) -> list[str]:
    return [x.candidate.key.id for x in ranked]


def test_both_are_registered_and_configurable() -> None:
    assert STRATEGIES["learned"] is learned
    assert STRATEGIES["bandit"] is bandit
    assert SettingsSpec.model_validate({"strategy": "bandit"}).strategy == "bandit"
    assert S.learned_weights == Weights(reliability=0.4, speed=0.3, quality=0.2, recency=0.1)
    # the engine's defaults are the configuration's defaults
    assert strategy_settings(SettingsSpec()) == S
    with pytest.raises(ValueError, match="at least one weight"):
        LearnedWeights(reliability=0, speed=0, quality=0, recency=0)


def test_normalisations() -> None:
    assert speed(0.0, 1000.0) == 1.0
    assert speed(1000.0, 1000.0) == 0.5
    assert speed(2000.0, 1000.0) == pytest.approx(1 / 3)
    assert speed(None, 1000.0) == 0.5
    assert recency(None, NOW, 300.0) == 0.0
    assert recency(NOW, NOW, 300.0) == 1.0
    assert recency(NOW - 300.0, NOW, 300.0) == pytest.approx(math.exp(-1))


def test_the_score_is_seed_004s_formula() -> None:
    st = stats("groq", ok=18, fail=0, latency_ms=1000.0, quality=0.9)
    [x] = learned([cand("groq", st)], FACTS, random.Random(0), S)
    parts = x.breakdown
    assert parts["reliability"] == pytest.approx(19 / 20)
    assert parts["speed"] == pytest.approx(0.5)
    assert parts["quality"] == pytest.approx(0.9)
    assert parts["recency"] == pytest.approx(1.0)
    assert x.score == pytest.approx(0.4 * 19 / 20 + 0.3 * 0.5 + 0.2 * 0.9 + 0.1 * 1.0)


def test_unknown_components_are_neutral() -> None:
    [x] = learned([cand("new")], FACTS, random.Random(0), S)
    assert x.breakdown == {
        "reliability": 0.5, "speed": 0.5, "quality": 0.5, "recency": 0.0, "probe": 0.0,
    }  # fmt: skip
    assert x.score == pytest.approx(0.4 * 0.5 + 0.3 * 0.5 + 0.2 * 0.5)


def test_reliable_beats_fast_but_failing_and_quality_breaks_a_tie() -> None:
    fast_failing = cand("groq", stats("groq", ok=5, fail=5, latency_ms=200.0))
    steady = cand("gemini", stats("gemini", ok=10, latency_ms=600.0))
    assert names(learned([fast_failing, steady], FACTS, random.Random(0), S)) == ["gemini", "groq"]
    worse = cand("a", stats("a", ok=10, quality=0.3))
    better = cand("b", stats("b", ok=10, quality=0.9))
    assert names(learned([worse, better], FACTS, random.Random(0), S)) == ["b", "a"]


def test_weights_come_from_the_settings() -> None:
    fast = cand("fast", stats("fast", ok=3, fail=7, latency_ms=100.0))
    sure = cand("sure", stats("sure", ok=10, latency_ms=3000.0))
    assert names(learned([fast, sure], FACTS, random.Random(0), S))[0] == "sure"
    weights = Weights(reliability=0.1, speed=0.9, quality=0, recency=0)
    speedy = StrategySettings(learned_weights=weights)
    assert names(learned([fast, sure], FACTS, random.Random(0), speedy))[0] == "fast"


def test_a_half_open_key_gets_the_single_probe_first() -> None:
    h = Health()
    for _ in range(3):
        record_failure(h, ErrorKind.SERVER_ERROR, "503", NOW - 40)
    assert unavailable_reason(h, NOW) is None  # the cool-down is over: half-open
    bad = cand("bad", stats("bad", ok=1, fail=3), health=h)
    good = cand("good", stats("good", ok=10))
    for strategy in ("learned", "bandit"):
        ranked = rank(strategy, [good, bad], FACTS, random.Random(1), S)
        assert names(ranked)[0] == "bad"
        assert ranked[0].breakdown["probe"] == 1.0
    begin_attempt(h)  # the probe is in flight: nobody else gets through
    assert unavailable_reason(h, NOW) == "circuit half-open: a probe request is in flight"


def test_the_bandit_is_reproducible_with_a_seeded_random() -> None:
    cands = [cand("a", stats("a", ok=3, fail=2)), cand("b", stats("b", ok=4, fail=3))]
    draws = [names(bandit(cands, FACTS, random.Random(5), S)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]


def test_the_bandit_exploits_a_clear_winner_and_explores_a_bounded_share() -> None:
    best = cand("best", stats("best", ok=12, latency_ms=300.0))
    bad = cand("bad", stats("bad", ok=2, fail=10, latency_ms=300.0))
    rng = random.Random(11)
    n = 4000
    firsts = Counter(names(bandit([best, bad], FACTS, rng, S))[0] for _ in range(n))
    share = firsts["bad"] / n
    assert 0.5 * S.bandit_exploration < share < 2 * S.bandit_exploration + 0.01


def test_the_bandit_measures_a_new_key_model_once_then_samples() -> None:
    known = cand("known", stats("known", ok=12, latency_ms=500.0))
    fresh = cand("fresh")  # never used
    assert names(bandit([known, fresh], FACTS, random.Random(3), S))[0] == "fresh"
    assert names(learned([known, fresh], FACTS, random.Random(3), S))[0] == "known"
    # Once measured (one good call, as fast), its wide posterior still gets it tried often.
    fresh.stats = stats("fresh", ok=1, latency_ms=500.0)
    rng = random.Random(3)
    firsts = Counter(names(bandit([known, fresh], FACTS, rng, S))[0] for _ in range(2000))
    assert 0.05 < firsts["fresh"] / 2000 < 0.5
