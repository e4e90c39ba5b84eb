"""Prices and the cost of an attempt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from quotaflow.types import Usage

_PER = 1_000_000.0
# How a ledger row's detail starts when its cost is a stand-in (the model has no known price).
COST_ESTIMATED = "cost estimated: the model has no known price"


@dataclass(frozen=True, slots=True)
class Tier:
    """Above ``above`` prompt tokens, every token of the request costs these prices (the
    providers' long-context prices: crossing the threshold re-prices the whole request)."""

    above: int
    input: float
    output: float
    cached: float | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cached: float | None = None  # None: cached input tokens cost the normal input price
    # No known price: a stand-in (settings.unpriced), flagged in the ledger as estimated.
    estimated: bool = False
    tiers: tuple[Tier, ...] = ()  # ascending ``above``

    def rates(self, prompt_tokens: int) -> tuple[float, float, float]:
        """Input, output and cached-input prices for a request of ``prompt_tokens``."""
        inp, out, cached = self.input, self.output, self.cached
        for tier in reversed(self.tiers):
            if prompt_tokens > tier.above:
                inp, out, cached = tier.input, tier.output, tier.cached
                break
        return inp, out, inp if cached is None else cached

    def cost_usd(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        if self.tiers:
            inp, out, cached_price = self.rates(usage.prompt_tokens)
        else:  # the common case, on every answer: no tier to look through
            inp, out = self.input, self.output
            cached_price = inp if self.cached is None else self.cached
        return (
            (usage.prompt_tokens - cached) * inp
            + cached * cached_price
            + usage.completion_tokens * out
        ) / _PER

    def worst_case_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        if self.tiers:
            inp, out, _ = self.rates(prompt_tokens)
            return (prompt_tokens * inp + completion_tokens * out) / _PER
        return (prompt_tokens * self.input + completion_tokens * self.output) / _PER


FREE = Price()


class LazyPrice:
    """A price looked up the first time it is read, then kept: the price table is loaded
    off the start path (a background thread warms it), never per request. Reads like
    :class:`Price`."""

    __slots__ = ("_lookup", "_price")

    def __init__(self, lookup: Callable[[], Price]) -> None:
        self._lookup: Callable[[], Price] | None = lookup
        self._price: Price | None = None

    @property
    def price(self) -> Price:
        """The price, looked up now if it has not been yet (idempotent, thread-safe enough:
        two first reads look it up twice and keep the same value)."""
        price = self._price
        if price is None:
            lookup = self._lookup
            assert lookup is not None
            price = self._price = lookup()
            self._lookup = None
        return price

    @property
    def resolved(self) -> bool:
        return self._price is not None

    @property
    def input(self) -> float:
        return self.price.input

    @property
    def output(self) -> float:
        return self.price.output

    @property
    def cached(self) -> float | None:
        return self.price.cached

    @property
    def estimated(self) -> bool:
        return self.price.estimated

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self.price.tiers

    def rates(self, prompt_tokens: int) -> tuple[float, float, float]:
        return self.price.rates(prompt_tokens)

    def cost_usd(self, usage: Usage) -> float:
        return (self._price or self.price).cost_usd(usage)

    def worst_case_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (self._price or self.price).worst_case_usd(prompt_tokens, completion_tokens)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyPrice):
            return self.price == other.price
        if isinstance(other, Price):
            return self.price == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.price)

    def __repr__(self) -> str:
        return f"LazyPrice({self._price!r})" if self._price is not None else "LazyPrice(…)"


PriceLike = Price | LazyPrice
"""What a catalog model holds: a price, or one looked up when first read."""
