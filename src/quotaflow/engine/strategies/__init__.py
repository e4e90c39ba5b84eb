"""Routing strategies: pure functions from candidates to a ranking, and the overrides.

A strategy never reads storage or the clock; randomness comes in as a ``random.Random``.
Each ranked candidate carries its score breakdown, which is what the dashboard and the
``x-quotaflow-*`` headers show as "why this key".
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from quotaflow.engine.candidates import Candidate, RequestFacts
from quotaflow.engine.strategies.bandit import bandit
from quotaflow.engine.strategies.base import STATE_PENALTY, Scored, Strategy, StrategySettings
from quotaflow.engine.strategies.learned import learned

__all__ = [
    "STATE_PENALTY",
    "STRATEGIES",
    "Scored",
    "Strategy",
    "StrategySettings",
    "apply_overrides",
    "rank",
]


def headroom(
    cands: Sequence[Candidate], facts: RequestFacts, rng: random.Random, s: StrategySettings
) -> list[Scored]:
    """Seed 000: remaining % + preferred-provider bonus + state penalty; highest first."""
    out = []
    preferred, preferred_bonus = s.preferred_providers, s.preferred_bonus
    for c in cands:
        base = c.remaining_share * 100.0
        bonus = preferred_bonus if c.deployment.provider in preferred else 0.0
        penalty = STATE_PENALTY[c.state]
        out.append(
            Scored(
                c,
                base + bonus + penalty,
                {"remaining_pct": base, "provider_bonus": bonus, "state_penalty": penalty},
            )
        )
    if len(out) > 1:
        out.sort(key=_by_score_desc)
    return out


def _by_score_desc(x: Scored) -> float:
    return -x.score


def priority(
    cands: Sequence[Candidate], facts: RequestFacts, rng: random.Random, s: StrategySettings
) -> list[Scored]:
    """Seed 002: lowest priority number first (deployment, then key), headroom breaks ties."""
    ranked = sorted(
        cands,
        key=lambda c: (
            c.deployment.priority,
            c.key.priority,
            c.deployment.order,
            -c.remaining_share,
        ),
    )
    n = len(ranked)
    return [
        Scored(
            c,
            float(n - i),
            {"deployment_priority": c.deployment.priority, "key_priority": c.key.priority},
        )
        for i, c in enumerate(ranked)
    ]


def cost(
    cands: Sequence[Candidate], facts: RequestFacts, rng: random.Random, s: StrategySettings
) -> list[Scored]:
    """Cheapest worst-case cost first; headroom breaks ties."""
    out = [
        Scored(
            c,
            -c.est_cost_usd,
            {"est_cost_usd": c.est_cost_usd, "remaining_pct": c.remaining_share * 100},
        )
        for c in cands
    ]
    out.sort(key=lambda x: (-x.score, -x.candidate.remaining_share))
    return out


def latency(
    cands: Sequence[Candidate], facts: RequestFacts, rng: random.Random, s: StrategySettings
) -> list[Scored]:
    """Lowest latency EWMA first; keys never measured go first so they get measured."""
    out = []
    for c in cands:
        lat = c.health.latency_ewma_ms
        out.append(
            Scored(
                c,
                -(lat if lat is not None else 0.0),
                {"latency_ewma_ms": lat if lat is not None else -1.0},
            )
        )
    out.sort(key=lambda x: -x.score)
    return out


def weighted(
    cands: Sequence[Candidate], facts: RequestFacts, rng: random.Random, s: StrategySettings
) -> list[Scored]:
    """Weighted shuffle (Efraimidis–Spirakis): each order drawn with probability ∝ weight."""
    out = []
    for c in cands:
        w = c.deployment.weight * c.key.weight
        u = rng.random()
        k = math.log(u) / w if u > 0 else -math.inf
        out.append(Scored(c, k, {"weight": w}))
    out.sort(key=lambda x: -x.score)
    return out


STRATEGIES: dict[str, Strategy] = {
    "headroom": headroom,
    "priority": priority,
    "cost": cost,
    "latency": latency,
    "weighted": weighted,
    "learned": learned,
    "bandit": bandit,
}


def apply_overrides(ranked: list[Scored]) -> list[Scored]:
    """Forced provider first, then keys below the rate saturation (seed 001: a key above
    80 % of a rate limit is used only when no other has room), then the preferred provider,
    then the complexity tier; the strategy's order holds within each group."""

    if len(ranked) < 2:
        return list(ranked)
    flags = ranked[0].candidate.flags
    saturated = False
    for s in ranked:
        c = s.candidate
        if c.flags is not flags:
            return sorted(ranked, key=_override_key)
        saturated = saturated or c.saturated
    # One deployment's candidates (they share its flags): only saturation can reorder them.
    return sorted(ranked, key=_saturated) if saturated else list(ranked)


def _saturated(s: Scored) -> bool:
    return s.candidate.saturated


def _override_key(s: Scored) -> tuple[bool, bool, bool, bool]:
    c = s.candidate
    f = c.flags
    # The complexity tier before the preferred provider: a preference never overrides it.
    return (not f.get("forced"), c.saturated, not f.get("tier_match"), not f.get("preferred"))


def rank(
    name: str,
    cands: Sequence[Candidate],
    facts: RequestFacts,
    rng: random.Random,
    settings: StrategySettings,
) -> list[Scored]:
    return apply_overrides(STRATEGIES[name](cands, facts, rng, settings))
