"""What every strategy shares: the ranked result, the strategy type and its settings.

The settings are the engine's own values (built from the configuration by
:mod:`quotaflow.config.load`), so a strategy never sees the configuration schema.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from quotaflow.engine.candidates import Candidate, RequestFacts
from quotaflow.types import State

STATE_PENALTY = {State.OK: 0.0, State.WARNING: -5.0, State.CRITICAL: -15.0, State.DEPLETED: -100.0}


@dataclass(frozen=True, slots=True)
class LearnedWeights:
    """Seed 004's score weights: 0.4·reliability + 0.3·speed + 0.2·quality + 0.1·recency."""

    reliability: float = 0.4
    speed: float = 0.3
    quality: float = 0.2
    recency: float = 0.1


@dataclass(frozen=True, slots=True)
class StrategySettings:
    """The knobs the strategies read; the defaults are the configuration's defaults."""

    preferred_providers: tuple[str, ...] = ("anthropic", "claude")
    preferred_bonus: float = 10.0  # seed 000: +10 for the preferred provider
    learned_weights: LearnedWeights = field(default_factory=LearnedWeights)
    learning_half_life_s: float = 60.0  # evidence halves this often
    learning_window: float = 12.0  # recent outcomes the evidence holds
    learned_speed_reference_ms: float = 1000.0  # speed 0.5 at this latency
    learned_recency_tau_s: float = 300.0  # recency = exp(-age / tau)
    bandit_exploration: float = 0.02  # share of forced exploration
    bandit_confidence: float = 3.0  # evidence weight in the draws


@dataclass(slots=True)
class Scored:
    candidate: Candidate
    score: float
    breakdown: dict[str, float] = field(default_factory=dict)


Strategy = Callable[
    [Sequence[Candidate], RequestFacts, random.Random, StrategySettings], list[Scored]
]
