"""A key's limits as people read them: start-up's line per key, ``quotaflow status``,
``/api/status``.

Every limit says where it came from: ``config`` (the YAML), ``free-plan preset`` (the key is
declared on a free plan), ``env override`` (``<PROVIDER>_LIMIT``), ``added`` (the quota of a
key added at runtime), ``learned`` (what the provider's rate-limit headers announced).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from quotaflow.engine.catalog import Key
from quotaflow.engine.durations import human_duration
from quotaflow.engine.health import Health
from quotaflow.engine.limits import Limit

LEARNED = "learned"

_PER = {
    "minute": "a minute",
    "hour": "an hour",
    "day": "a day",
    "month": "a month",
    "once": "in all",
}


MONEY_DIGITS = 3  # significant digits of an amount under a dollar
MONEY_MAX_DECIMALS = 12


def money(amount: float) -> str:
    """``$25.00``, ``$1,234.57``; under a dollar with 3 significant digits (at least two
    decimals): ``$0.50``, ``$0.0125``, ``$0.0001`` (a limit of a hundredth of a cent is
    not ``$0.00``)."""
    size = abs(amount)
    if size >= 1 or size == 0 or not math.isfinite(size):
        return f"${amount:,.2f}"
    decimals = MONEY_DIGITS - 1 - math.floor(math.log10(size))
    text = f"{amount:.{min(max(decimals, 2), MONEY_MAX_DECIMALS)}f}"
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents[:2]}{cents[2:].rstrip('0')}"


def amount_text(metric: str, amount: float) -> str:
    """``200,000 tokens``, ``1 request``, ``$25.00``, ``$0.0001``."""
    if metric == "cost":
        return money(amount)
    unit = metric if amount != 1 else metric.removesuffix("s")
    return f"{amount:,.0f} {unit}" if float(amount).is_integer() else f"{amount:,g} {unit}"


def number_text(metric: str, amount: float) -> str:
    """An amount of ``metric`` without its unit, money with its ``$``: ``200,000``, ``$0.0001``."""
    return money(amount) if metric == "cost" else f"{amount:,.0f}"


def limit_text(lim: Limit) -> str:
    """``200,000 tokens a day (config)``, ``50 requests per 1m rolling (env override)``."""
    w = lim.window
    per = _PER.get(w.kind) or f"per {human_duration(w.seconds)} rolling"
    return f"{amount_text(lim.metric, lim.amount)} {per} ({lim.source})"


def learned_limits(h: Health | None, now: float) -> list[dict[str, Any]]:
    """The limits the provider's headers announced for a key, as last seen."""
    if h is None or h.rate is None or h.rate_seen_at is None:
        return []
    r, seen = h.rate, h.rate_seen_at
    out = []
    for metric, amount, left, reset in (
        ("requests", r.requests_limit, r.requests_remaining, r.requests_reset_s),
        ("tokens", r.tokens_limit, r.tokens_remaining, r.tokens_reset_s),
    ):
        if amount is None:
            continue
        resets_at = seen + reset if reset is not None else None
        if resets_at is not None and resets_at <= now:
            left = amount  # its window has reset since the headers were seen
        entry = {"metric": metric, "amount": amount, "remaining": left, "resets_at": resets_at}
        out.append({**entry, "source": LEARNED})
    return out


def learned_text(entry: dict[str, Any]) -> str:
    """``10 requests, 3 left (learned)`` (the reset time is in the entry, not the text: the
    line reads the same until the usage changes)."""
    text = amount_text(entry["metric"], entry["amount"])
    if entry["remaining"] is not None:
        text += f", {entry['remaining']:,} left"
    return f"{text} ({LEARNED})"


def key_line(key: Key, shared: Sequence[Limit] = (), learned: Sequence[str] = ()) -> str:
    """``openai key team-a: paid plan, no limit`` — never the secret."""
    parts = [limit_text(lim) for lim in (*key.limits, *shared)] + list(learned)
    limits = "; ".join(parts) if parts else "no limit"
    return f"{key.provider} key {key.label}: {key.plan} plan, {limits}"


_WINDOW_ADJ = {
    "minute": "per-minute",
    "hour": "hourly",
    "day": "daily",
    "month": "monthly",
    "once": "total",
}
_METRIC_WORDS = {"tokens": "tokens", "requests": "requests", "cost": "spend"}


def scope_words(scope: str, keys: Mapping[str, Key]) -> str:
    """``key:team-a`` → ``openai key team-a``; ``agent:bob@openai`` → ``agent bob on openai``."""
    kind, _, name = scope.partition(":")
    if kind == "key":
        key = keys.get(name)
        return f"{key.provider} key {key.label}" if key is not None else f"key {name}"
    if kind == "agent":
        agent, at, provider = name.partition("@")
        return f"agent {agent}" + (f" on {provider}" if at else "")
    if kind in ("provider", "route"):
        return f"{kind} {name}"
    return "all traffic" if scope == "global" else scope


def limit_alert(lim: Limit, level: float, used: float, keys: Mapping[str, Key]) -> str:
    """``openai key team-a: 90 % of its daily tokens (180,000 of 200,000 tokens)``."""
    w = lim.window
    adj = _WINDOW_ADJ.get(w.kind) or f"rolling {human_duration(w.seconds)}"
    of = f"{amount_text(lim.metric, used)} of {amount_text(lim.metric, lim.amount)}"
    return f"{scope_words(lim.scope, keys)}: {level * 100:g} % of its {adj} {_METRIC_WORDS[lim.metric]} ({of})"
