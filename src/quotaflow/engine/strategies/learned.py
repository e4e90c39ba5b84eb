"""Strategy ``learned``: seed 004's score over each key × model's time-decayed statistics.

    score = w_r·reliability + w_s·speed + w_q·quality + w_c·recency     (default 0.4/0.3/0.2/0.1)

with the weights from ``settings.learned_weights`` (divided by their sum, so the score stays
in 0 … 1) and each component in 0 … 1:

* **reliability** — the decayed success rate with a Beta(1, 1) prior,
  ``(S + 1) / (S + F + 2)``, where S and F are success and failure counts that halve every
  ``settings.learning_half_life_s`` seconds (0.5 when nothing is known);
* **speed** — ``1 / (1 + latency_ewma_ms / settings.learned_speed_reference_ms)``: 1 for an
  instant answer, 0.5 at the reference latency (1 s by default), 0.33 at twice it; 0.5
  when no latency is known yet;
* **quality** — the running mean of feedback scores (``POST /api/feedback``,
  ``update_quality_score``); 0.5 before any feedback;
* **recency** — ``exp(-age_of_last_success / settings.learned_recency_tau_s)``; 0 when it
  never succeeded.

Highest score first; ties go to the deployment's priority, then to the key with more headroom.
One exception: a key whose circuit is half-open (its cool-down after a burst of failures is
over) goes first, so that exactly one request probes it — success closes the circuit,
failure re-opens it. ``learned`` is deterministic and never explores otherwise; ``bandit``
(:mod:`.bandit`) is the variant that keeps exploring so a recovered provider is noticed.

Quotas come first whatever the score: the gateway plans candidates in this order and skips
every one without headroom, and the overrides put keys above the rate saturation last.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from quotaflow.engine.candidates import Candidate, RequestFacts
from quotaflow.engine.stats import reliability
from quotaflow.engine.strategies.base import Scored, StrategySettings

NEUTRAL = 0.5  # a component nothing is known about yet


def speed(latency_ms: float | None, reference_ms: float) -> float:
    """``1 / (1 + latency / reference)``; :data:`NEUTRAL` when the latency is unknown."""
    if latency_ms is None:
        return NEUTRAL
    return 1.0 / (1.0 + max(latency_ms, 0.0) / reference_ms)


def recency(last_success: float | None, now: float, tau_s: float) -> float:
    """``exp(-age / tau)`` of the last success; 0 when there was none."""
    if last_success is None:
        return 0.0
    return math.exp(-max(now - last_success, 0.0) / tau_s)


def components(c: Candidate, s: StrategySettings, rel: float | None = None) -> dict[str, float]:
    """The four components of a candidate's score; ``rel`` replaces the mean reliability
    (the bandit passes a sampled one)."""
    st = c.stats
    if rel is None:
        rel = reliability(st, c.at, s.learning_half_life_s)
    quality = st.quality_score if st is not None and st.quality_score is not None else NEUTRAL
    return {
        "reliability": rel,
        "speed": speed(st.latency_ewma_ms if st else None, s.learned_speed_reference_ms),
        "quality": quality,
        "recency": recency(st.last_success if st else None, c.at, s.learned_recency_tau_s),
    }


def weighted_score(parts: dict[str, float], s: StrategySettings) -> float:
    """The weighted sum of the components, with the weights normalised to sum to 1."""
    w = s.learned_weights
    total = w.reliability + w.speed + w.quality + w.recency
    return (
        w.reliability * parts["reliability"]
        + w.speed * parts["speed"]
        + w.quality * parts["quality"]
        + w.recency * parts["recency"]
    ) / total


def is_probe(c: Candidate) -> bool:
    """True when the candidate's key is half-open: its next request is the circuit's probe."""
    return c.health.circuit == "half_open" and not c.health.probe_in_flight


def is_untested(c: Candidate) -> bool:
    """True when the key × model was never used (no statistics at all)."""
    return c.stats is None or c.stats.last_used is None


def order(scored: list[Scored], *, untested_first: bool = False) -> list[Scored]:
    """Probes first (then, if asked, key × models never used), then by score; ties by
    deployment priority, then by headroom."""

    def key(x: Scored) -> tuple[bool, bool, float, int, int, float]:
        c = x.candidate
        return (
            not is_probe(c),
            not (untested_first and is_untested(c)),
            -x.score,
            c.deployment.priority,
            c.deployment.order,
            -c.remaining_share,
        )

    return sorted(scored, key=key)


def score_all(
    cands: Sequence[Candidate], s: StrategySettings, rel_of: Callable[[Candidate], float | None]
) -> list[Scored]:
    """Every candidate scored, its breakdown holding the components and ``probe``."""
    out = []
    for c in cands:
        parts = components(c, s, rel_of(c))
        total = weighted_score(parts, s)
        parts["probe"] = 1.0 if is_probe(c) else 0.0
        out.append(Scored(c, total, parts))
    return out


def learned(
    cands: Sequence[Candidate], facts: RequestFacts, rng: random.Random, s: StrategySettings
) -> list[Scored]:
    """Seed 004's score over decayed statistics, highest first (see the module docstring)."""
    return order(score_all(cands, s, lambda c: None))
