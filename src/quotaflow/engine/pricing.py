"""Prices and the cost of an attempt."""

from __future__ import annotations

from dataclasses import dataclass

from quotaflow.types import Usage

_PER = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cached: float | None = None  # None: cached input tokens cost the normal input price
    # No known price: a stand-in (settings.unpriced), flagged in the ledger as estimated.
    estimated: bool = False

    def cost_usd(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = self.input if self.cached is None else self.cached
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * cached_price
            + usage.completion_tokens * self.output
        ) / _PER

    def worst_case_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / _PER


FREE = Price()
