"""Planning a reservation: the worst case a request may consume on every limit it touches.

Before a request goes upstream the gateway reserves, atomically and on every limit at
once, ``estimated prompt tokens + choices × max_tokens`` (tokens), ``1`` (requests) and the
worst case cost; ``choices`` is how many completions the request asks for (``n``), each of
which may run to ``max_tokens``. When the client set no ``max_tokens`` each completion is
clamped to its share of the headroom left, and that clamp is sent upstream, so even the
worst answer fits. After the
answer the provider-reported usage is committed and the rest released.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.pricing import PriceLike

EPS = 1e-9  # slack of the fit test (float sums of claims)


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class Claim:
    limit: Limit
    amount: float


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class Plan:
    claims: tuple[Claim, ...]
    prompt_tokens: int
    max_tokens: int  # the cap of each completion, as sent upstream
    clamped: bool  # True when max_tokens was chosen by the headroom, not the client
    choices: int = 1  # completions reserved for, each up to max_tokens

    @property
    def completion_tokens(self) -> int:
        """Completion tokens reserved: every choice at its cap."""
        return self.max_tokens * self.choices

    @property
    def reserved_tokens(self) -> int:
        return self.prompt_tokens + self.max_tokens * self.choices


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Why a plan does not fit: the first limit that is too full."""

    limit: Limit
    taken: float
    needed: float
    resets_at: float | None
    also: tuple[Shortfall, ...] = ()  # the other limits it does not fit either, in order
    held: float = 0.0  # of ``taken``, what requests in flight hold (reserved, not yet used)

    @property
    def every(self) -> tuple[Shortfall, ...]:
        """This shortfall and the others: every limit the request does not fit."""
        return (self, *self.also)

    def describe(self) -> str:
        lim = self.limit
        held = f" ({_fmt(self.held)} held by requests in flight)" if self.held > 0 else ""
        return (
            f"{lim.id}: {_fmt(self.taken)} of {_fmt(lim.amount)} {lim.metric} taken{held}, "
            f"request needs {_fmt(self.needed)}"
        )


def _fmt(x: float) -> str:
    return f"{x:.6g}" if not float(x).is_integer() else str(int(x))


def completion_headroom(
    limits: Sequence[Limit], usages: Mapping[str, LimitUsage], prompt_tokens: int, price: PriceLike
) -> float:
    """The most completion tokens that still fit every token and cost limit (``inf`` if none bind)."""
    room = math.inf
    for lim in limits:
        u = usages.get(lim.id)
        remaining = lim.amount - (u.taken if u else 0.0)
        if lim.metric == "tokens":
            room = min(room, remaining - prompt_tokens)
        elif lim.metric == "cost" and price.output > 0:
            left = remaining - price.worst_case_usd(prompt_tokens, 0)
            room = min(room, left / price.output * 1_000_000)
    return room


def plan_reservation(
    limits: Sequence[Limit],
    usages: Mapping[str, LimitUsage],
    *,
    prompt_tokens: int,
    requested_max_tokens: int | None,
    model_max_output: int,
    price: PriceLike,
    min_completion_tokens: int = 1,
    choices: int = 1,
) -> Plan | Shortfall:
    """The claims for one attempt, or the first limit it would overshoot (with the others it
    would overshoot too in :attr:`Shortfall.also`: a request waits for all of them)."""
    if requested_max_tokens is not None:
        max_tokens = requested_max_tokens
        clamped = False
    else:
        room = completion_headroom(limits, usages, prompt_tokens, price) / choices
        max_tokens = int(min(room, model_max_output)) if room != math.inf else model_max_output
        clamped = max_tokens < model_max_output
        if max_tokens < min_completion_tokens:
            max_tokens = min_completion_tokens
    tokens = float(prompt_tokens + max_tokens * choices)
    cost = price.worst_case_usd(prompt_tokens, max_tokens * choices)
    claims: list[Claim] = []
    short: list[Shortfall] = []
    for lim in limits:
        metric = lim.metric
        need = tokens if metric == "tokens" else 1.0 if metric == "requests" else cost
        u = usages.get(lim.id)
        taken = u.used + u.reserved if u is not None else 0.0
        if taken + need > lim.amount + EPS:
            frees = u.frees_at if u else None
            short.append(Shortfall(lim, taken, need, frees, held=u.reserved if u else 0.0))
        elif not short:
            claims.append(Claim(lim, need))
    if short:
        first = short[0]
        return Shortfall(
            first.limit, first.taken, first.needed, first.resets_at, tuple(short[1:]), first.held
        )
    return Plan(tuple(claims), prompt_tokens, max_tokens, clamped, choices)


def fits(claims: Sequence[Claim], usages: Mapping[str, LimitUsage]) -> Shortfall | None:
    """The first claim that does not fit the given usages, or ``None`` if all do."""
    for c in claims:
        u = usages.get(c.limit.id)
        taken = u.taken if u else 0.0
        if taken + c.amount > c.limit.amount + EPS:
            frees = u.frees_at if u else None
            return Shortfall(c.limit, taken, c.amount, frees, held=u.reserved if u else 0.0)
    return None
