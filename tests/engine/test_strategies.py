"""Strategies rank candidates; overrides put forced, unsaturated, preferred and tier first."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from quotaflow.engine.candidates import Candidate, RequestFacts
from quotaflow.engine.health import Health
from quotaflow.engine.limits import LimitUsage, remaining_share, worst_state
from quotaflow.engine.pricing import Price
from quotaflow.engine.reservation import Plan
from quotaflow.engine.strategies import (
    STATE_PENALTY,
    STRATEGIES,
    Scored,
    apply_overrides,
    cost,
    headroom,
    latency,
    priority,
    rank,
    weighted,
)
from quotaflow.engine.strategies.base import StrategySettings
from quotaflow.testing import deployment, key, limit, model
from quotaflow.types import State

SETTINGS = StrategySettings()
FACTS = RequestFacts(prompt_tokens=1_000, max_tokens=1_000)


def cand(
    name: str,
    provider: str = "openai",
    *,
    used_share: float = 0.0,
    rate_share: float | None = None,
    price: Price | None = None,
    latency_ms: float | None = None,
    dep_priority: int = 0,
    key_priority: int = 0,
    order: int = 0,
    weight: float = 1.0,
    key_weight: float = 1.0,
    tier: str | None = None,
    forced: bool = False,
    preferred: bool = False,
    tier_match: bool = True,
) -> Candidate:
    """A candidate whose key has a daily token quota ``used_share`` full, and optionally a
    per-minute rate limit ``rate_share`` full."""
    usages = [LimitUsage(limit(f"key:{name}", "tokens", "day", 1000), used_share * 1000, 0, None)]
    if rate_share is not None:
        rate = limit(f"key:{name}", "requests", "minute", 100)
        usages.append(LimitUsage(rate, rate_share * 100, 0, None))
    m = model(f"m-{name}", tier=tier, price=price)
    k = key(name, provider, priority=key_priority, weight=key_weight)
    dep = deployment(provider, m, weight=weight, priority=dep_priority, order=order)
    h = Health(latency_ewma_ms=latency_ms)
    sat = any(u.limit.window.is_rate and u.used_share >= 0.8 for u in usages)
    flags = {"forced": forced, "preferred": preferred, "tier_match": tier_match}
    return Candidate(
        deployment=dep,
        key=k,
        limits=tuple(u.limit for u in usages),
        plan=Plan((), 1_000, 1_000, False),
        key_usages=tuple(usages),
        state=worst_state(usages),
        remaining_share=remaining_share(usages),
        saturated=sat,
        health=h,
        flags=flags,
        est_cost_usd=m.price.worst_case_usd(1_000, 1_000),
    )


def names(ranked: list[Scored]) -> list[str]:
    return [s.candidate.key.id for s in ranked]


def run(strategy, cands, rng=None, settings=SETTINGS):
    return strategy(cands, FACTS, rng or random.Random(0), settings)


# -- headroom (seed 000) -----------------------------------------------------------------------


def test_headroom_scores_like_seed_000_by_hand() -> None:
    cands = [
        cand("claude", "anthropic", used_share=0.30),  # 70 + 10 + 0 = 80
        cand("gpt", "openai", used_share=0.15),  # 85 + 0 + 0 = 85
        cand("warn", "openai", used_share=0.85),  # 15 + 0 - 5 = 10
        cand("crit", "anthropic", used_share=0.95),  # 5 + 10 - 15 = 0
        cand("gone", "openai", used_share=1.0),  # 0 + 0 - 100 = -100
        cand("ok79", "openai", used_share=0.79),  # 21 + 0 + 0 = 21
    ]
    ranked = run(headroom, cands)
    assert names(ranked) == ["gpt", "claude", "ok79", "warn", "crit", "gone"]
    scores = {s.candidate.key.id: s.score for s in ranked}
    assert scores == pytest.approx(
        {"gpt": 85, "claude": 80, "ok79": 21, "warn": 10, "crit": 0, "gone": -100}
    )
    claude = next(s for s in ranked if s.candidate.key.id == "claude")
    assert claude.breakdown == pytest.approx(
        {"remaining_pct": 70, "provider_bonus": 10, "state_penalty": 0}
    )
    assert STATE_PENALTY == {
        State.OK: 0,
        State.WARNING: -5,
        State.CRITICAL: -15,
        State.DEPLETED: -100,
    }


def test_headroom_bonus_follows_the_configured_preferred_providers() -> None:
    cands = [cand("a", "anthropic", used_share=0.2), cand("o", "openai", used_share=0.15)]
    assert names(run(headroom, cands)) == ["a", "o"]  # 80 + 10 > 85
    plain = StrategySettings(preferred_providers=(), preferred_bonus=10)
    assert names(run(headroom, cands, settings=plain)) == ["o", "a"]


def test_headroom_uses_the_binding_limit() -> None:
    # 10 % of the daily quota used, but 70 % of the per-minute rate: 30 % remaining.
    tight = cand("tight", used_share=0.1, rate_share=0.7)
    loose = cand("loose", used_share=0.5)
    ranked = run(headroom, [tight, loose])
    assert names(ranked) == ["loose", "tight"]
    assert ranked[1].score == pytest.approx(30)


# -- priority (seed 002), cost, latency --------------------------------------------------------


def test_priority_orders_by_deployment_then_key_then_order_then_headroom() -> None:
    cands = [
        cand("d1k1", dep_priority=1, key_priority=1),
        cand("d0k2", dep_priority=0, key_priority=2),
        cand("d0k1-late", dep_priority=0, key_priority=1, order=2),
        cand("d0k1-full", dep_priority=0, key_priority=1, order=1, used_share=0.6),
        cand("d0k1-empty", dep_priority=0, key_priority=1, order=1, used_share=0.1),
    ]
    ranked = run(priority, cands)
    assert names(ranked) == ["d0k1-empty", "d0k1-full", "d0k1-late", "d0k2", "d1k1"]
    assert [s.score for s in ranked] == [5, 4, 3, 2, 1]
    assert ranked[-1].breakdown == {"deployment_priority": 1, "key_priority": 1}


def test_cost_orders_by_worst_case_cost_then_headroom() -> None:
    cheap = Price(0.15, 0.60)
    cands = [
        cand("pricey", price=Price(2.5, 10.0)),
        cand("cheap-full", price=cheap, used_share=0.5),
        cand("cheap-empty", price=cheap, used_share=0.1),
        cand("free", price=Price()),
    ]
    ranked = run(cost, cands)
    assert names(ranked) == ["free", "cheap-empty", "cheap-full", "pricey"]
    assert ranked[1].breakdown["est_cost_usd"] == pytest.approx((1000 * 0.15 + 1000 * 0.60) / 1e6)
    assert ranked[3].score == pytest.approx(-(1000 * 2.5 + 1000 * 10.0) / 1e6)


def test_latency_measures_unknown_keys_first_then_fastest() -> None:
    cands = [cand("slow", latency_ms=900), cand("new"), cand("fast", latency_ms=80)]
    ranked = run(latency, cands)
    assert names(ranked) == ["new", "fast", "slow"]
    assert ranked[0].breakdown == {"latency_ewma_ms": -1.0}
    assert ranked[1].breakdown == {"latency_ewma_ms": 80}


# -- weighted shuffle ----------------------------------------------------------------------------


def test_weighted_shuffle_picks_first_in_proportion_to_weight() -> None:
    # Weight is the deployment's times the key's: 1, 2, 3, 4.
    cands = [
        cand("w1"),
        cand("w2", weight=2.0),
        cand("w3", key_weight=3.0),
        cand("w4", weight=2.0, key_weight=2.0),
    ]
    rng = random.Random(1234)
    draws = 5_000
    firsts = Counter(names(weighted(cands, FACTS, rng, SETTINGS))[0] for _ in range(draws))
    for name, w in (("w1", 1), ("w2", 2), ("w3", 3), ("w4", 4)):
        assert firsts[name] / draws == pytest.approx(w / 10, abs=0.025), firsts


def test_weighted_shuffle_is_a_permutation_and_reproducible() -> None:
    cands = [cand(f"k{i}", weight=i + 1.0) for i in range(5)]
    a = names(weighted(cands, FACTS, random.Random(7), SETTINGS))
    b = names(weighted(cands, FACTS, random.Random(7), SETTINGS))
    assert a == b
    assert sorted(a) == [f"k{i}" for i in range(5)]
    orders = {tuple(names(weighted(cands, FACTS, random.Random(s), SETTINGS))) for s in range(50)}
    assert len(orders) > 10  # it really shuffles


def test_weighted_shuffle_second_place_follows_weights_too() -> None:
    cands = [cand("heavy", weight=8.0), cand("a"), cand("b", weight=3.0)]
    rng = random.Random(99)
    draws = 5_000
    lasts = Counter(names(weighted(cands, FACTS, rng, SETTINGS))[-1] for _ in range(draws))
    # P(a last) = P(heavy, b, a) + P(b, heavy, a) = 8/12·3/4 + 3/12·8/9
    expected_a_last = 8 / 12 * 3 / 4 + 3 / 12 * 8 / 9
    assert lasts["a"] / draws == pytest.approx(expected_a_last, abs=0.025)


# -- overrides ----------------------------------------------------------------------------------


def test_every_strategy_is_registered() -> None:
    assert set(STRATEGIES) == {
        "headroom",
        "priority",
        "cost",
        "latency",
        "weighted",
        "learned",
        "bandit",
    }


def test_forced_provider_goes_first_even_with_less_headroom_and_saturated() -> None:
    cands = [
        cand("best", "anthropic", used_share=0.0),
        cand("forced", "groq", used_share=0.95, rate_share=0.9, forced=True),
    ]
    assert names(rank("headroom", cands, FACTS, random.Random(0), SETTINGS)) == ["forced", "best"]


def test_preferred_provider_goes_first_then_the_strategy_order() -> None:
    cands = [
        cand("a-best", used_share=0.0),
        cand("p-low", "kimi", used_share=0.6, preferred=True),
        cand("p-high", "kimi", used_share=0.2, preferred=True),
        cand("a-next", used_share=0.3),
    ]
    ranked = rank("headroom", cands, FACTS, random.Random(0), SETTINGS)
    assert names(ranked) == ["p-high", "p-low", "a-best", "a-next"]


def test_complexity_tier_goes_before_other_tiers() -> None:
    cands = [
        cand("capable", used_share=0.0, tier="capable", tier_match=False),
        cand("cheap2", used_share=0.5, tier="cheap"),
        cand("cheap1", used_share=0.1, tier="cheap"),
    ]
    ranked = rank("headroom", cands, FACTS, random.Random(0), SETTINGS)
    assert names(ranked) == ["cheap1", "cheap2", "capable"]


def test_saturated_key_goes_last_while_others_have_room() -> None:
    cands = [
        cand("hot", rate_share=0.85),  # most quota left, but above 80 % of its rate limit
        cand("warm", used_share=0.6, rate_share=0.79),
        cand("cool", used_share=0.7),
    ]
    for strategy in STRATEGIES:
        ranked = rank(strategy, cands, FACTS, random.Random(0), SETTINGS)
        assert names(ranked)[-1] == "hot", strategy


def test_saturated_key_is_avoided_even_when_preferred_or_tier_matching() -> None:
    cands = [
        cand("pref-hot", "anthropic", rate_share=0.9, preferred=True),
        cand("tier-hot", rate_share=0.8, tier="cheap"),
        cand("other", used_share=0.5, tier="capable", tier_match=False),
    ]
    ranked = rank("headroom", cands, FACTS, random.Random(0), SETTINGS)
    assert names(ranked) == ["other", "pref-hot", "tier-hot"]


def test_saturated_key_is_still_used_when_it_is_the_only_one() -> None:
    only = [cand("hot", rate_share=0.95)]
    assert names(rank("priority", only, FACTS, random.Random(0), SETTINGS)) == ["hot"]
    both_hot = [cand("hot1", rate_share=0.95), cand("hot2", rate_share=0.85)]
    # All saturated: the strategy's own order decides (hot2 has more room).
    assert names(rank("headroom", both_hot, FACTS, random.Random(0), SETTINGS)) == ["hot2", "hot1"]


def test_apply_overrides_keeps_the_strategy_order_within_a_group() -> None:
    ranked = [Scored(cand(f"k{i}"), float(-i)) for i in range(6)]
    assert names(apply_overrides(ranked)) == [f"k{i}" for i in range(6)]
