"""Strategy ``bandit``: seed 004's score with Thompson sampling, so learning never stops.

Per request, each key × model's chance of success θ is *drawn* from its time-decayed
posterior ``Beta(k·S + 1, k·F + 1)`` (S, F: success and failure counts halving every
``settings.learning_half_life_s`` and capped at ``settings.learning_window`` recent outcomes;
``k`` = ``settings.bandit_confidence``, 3, so that a dozen outcomes already give a usable
posterior). The candidate's score is θ times the value of a successful call — seed 004's
score (:mod:`.learned`, same weights) with reliability 1 — since a failed call delivers no
speed or quality at all. A key × model with little recent evidence has a wide posterior and
is tried now and then; because evidence decays, a provider that failed a while ago drifts
back to "unknown" and gets tried again: that is how a recovery is noticed.

On top of that, a bounded share of picks is explicit exploration: with probability
``settings.bandit_exploration`` (default 2 %, at most 20 %) one of the other candidates, drawn
uniformly, is moved to the front (its breakdown says ``explore: 1``). A key × model never
used yet goes first once (its draw would be too pessimistic: unknown speed and no recent
success), so a key added at runtime gets measured. A half-open key still gets its single
probe request first, and quotas still come first (see :mod:`.learned`).

Randomness comes only from the ``random.Random`` passed in, so a seeded run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from quotaflow.engine.candidates import Candidate, RequestFacts
from quotaflow.engine.stats import decayed_counts
from quotaflow.engine.strategies.base import Scored, StrategySettings
from quotaflow.engine.strategies.learned import is_probe, is_untested, order, score_all


def sampled_reliability(
    c: Candidate, rng: random.Random, half_life_s: float, confidence: float = 1.0
) -> float:
    """One draw from the candidate's decayed posterior ``Beta(k·S + 1, k·F + 1)``, where
    ``k`` is ``confidence``."""
    if c.stats is None:
        return rng.betavariate(1.0, 1.0)
    succ, fail = decayed_counts(c.stats, c.at, half_life_s)
    return rng.betavariate(confidence * succ + 1.0, confidence * fail + 1.0)


def bandit(
    cands: Sequence[Candidate], facts: RequestFacts, rng: random.Random, s: StrategySettings
) -> list[Scored]:
    """Thompson-sampled seed 004 score, highest first, with bounded forced exploration."""
    hl, k = s.learning_half_life_s, s.bandit_confidence
    scored = score_all(cands, s, lambda c: 1.0)  # the value of a successful call
    for x in scored:
        theta = sampled_reliability(x.candidate, rng, hl, k)
        x.breakdown["reliability"] = theta
        x.breakdown["value"] = x.score
        x.score *= theta
    ranked = order(scored, untested_first=True)
    for x in ranked:
        x.breakdown["explore"] = 0.0
    first = ranked[0].candidate if ranked else None
    if (
        first is not None
        and len(ranked) > 1
        and not is_probe(first)
        and not is_untested(first)
        and rng.random() < s.bandit_exploration
    ):
        pick = ranked.pop(rng.randrange(1, len(ranked)))
        pick.breakdown["explore"] = 1.0
        ranked.insert(0, pick)
    return ranked
