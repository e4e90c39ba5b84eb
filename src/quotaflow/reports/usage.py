"""The usage report (seed 002's usage monitor) as pure functions over ledger totals and limits.

Inputs are what the ledger and the counters already know — :class:`UsageTotals` per group,
:class:`LimitUsage` per limit — plus the time; nothing here reads storage or the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from quotaflow.engine.catalog import Key
from quotaflow.engine.limits import LimitUsage, state_of
from quotaflow.storage.base import RequestCounts, UsageTotals

GROUPS = ("provider", "key", "agent", "model", "day")
DEFAULT_TOKENS_PER_REQUEST = 1000.0  # converts request quotas when the ledger has no history


def total_of(rows: Iterable[UsageTotals], name: str = "TOTAL") -> UsageTotals:
    """The sum of ``rows`` as one row named ``name``."""
    t = UsageTotals(name)
    for r in rows:
        t = UsageTotals(
            name,
            t.attempts + r.attempts,
            t.requests + r.requests,
            t.errors + r.errors,
            t.prompt_tokens + r.prompt_tokens,
            t.completion_tokens + r.completion_tokens,
            t.total_tokens + r.total_tokens,
            t.cost_usd + r.cost_usd,
            estimated_cost=t.estimated_cost + r.estimated_cost,
        )
    return t


def by_day(slots: Iterable[UsageTotals], tz: ZoneInfo) -> list[UsageTotals]:
    """Regroup 15-minute slot totals (``group`` = slot start, epoch s) into local days."""
    days: dict[str, list[float]] = {}  # summed in place: a month is ~3,000 slots
    for s in slots:
        day = datetime.fromtimestamp(float(s.group), tz).date().isoformat()
        t = days.get(day)
        if t is None:
            t = days[day] = [0, 0, 0, 0, 0, 0, 0.0, 0]
        t[0] += s.attempts
        t[1] += s.requests
        t[2] += s.errors
        t[3] += s.prompt_tokens
        t[4] += s.completion_tokens
        t[5] += s.total_tokens
        t[6] += s.cost_usd
        t[7] += s.estimated_cost
    return [
        UsageTotals(
            day, int(a), int(r), int(e), int(p), int(c), int(tok), cost, estimated_cost=int(est)
        )
        for day, (a, r, e, p, c, tok, cost, est) in sorted(days.items())
    ]


@dataclass(frozen=True, slots=True)
class QuotaLine:
    """One quota (a limit over a day, a month or for good) of a key or a provider, now."""

    scope: str
    provider: str
    metric: str
    window: str
    amount: float
    used: float
    remaining: float
    used_pct: float
    state: str
    resets_at: float | None


def quota_line(u: LimitUsage, provider: str) -> QuotaLine:
    lim = u.limit
    return QuotaLine(
        lim.scope,
        provider,
        lim.metric,
        str(lim.window),
        lim.amount,
        u.taken,
        u.remaining,
        round(u.used_share * 100.0, 2),
        u.state.value,
        u.resets_at,
    )


def quota_lines(
    keys: Sequence[Key],
    provider_limits: Mapping[str, Sequence[LimitUsage]],
    usages: Mapping[str, LimitUsage],
) -> list[QuotaLine]:
    """Every quota (not rate) limit of every key and provider, with its usage now."""
    lines: list[QuotaLine] = []
    for k in keys:
        for lim in k.limits:
            u = usages.get(lim.id)
            if u is not None and not lim.window.is_rate:
                lines.append(quota_line(u, k.provider))
    for provider, limits in provider_limits.items():
        lines.extend(quota_line(u, provider) for u in limits if not u.limit.window.is_rate)
    return lines


@dataclass(frozen=True, slots=True)
class ProviderQuota:
    """A provider's quota in its main metric (tokens, else requests), summed over its keys
    and its own limits of one reset window."""

    provider: str
    priority: int
    keys: int
    metric: str
    window: str  # the reset period: day, month, once, …
    amount: float
    used: float
    remaining: float
    used_pct: float
    state: str
    resets_at: float | None


# The order of a provider's quota rows: the soonest reset first, a one-time quota last.
_WINDOW_ORDER = {"day": 0, "month": 1, "once": 3}


def _window_order(window: str) -> tuple[int, float, str]:
    if window.startswith("rolling "):
        return 2, float(window.removeprefix("rolling ").removesuffix("s")), window
    return _WINDOW_ORDER.get(window, 4), 0.0, window


def provider_quotas(
    lines: Sequence[QuotaLine], priorities: Mapping[str, int]
) -> list[ProviderQuota]:
    """Each provider's quota in its main metric (tokens, else requests, else cost), one row
    per reset window: the keys with a daily quota and those with a one-time quota are
    summed apart, never mixed (nor one window picked for the other). Providers in priority
    order, a provider's windows from the soonest reset to one-time; providers without a
    quota are absent."""
    out = []
    for provider in sorted(
        {ln.provider for ln in lines}, key=lambda p: (priorities.get(p, 100), p)
    ):
        mine = [ln for ln in lines if ln.provider == provider]
        metric = next(
            (m for m in ("tokens", "requests", "cost") if any(ln.metric == m for ln in mine)), ""
        )
        chosen = [ln for ln in mine if ln.metric == metric]
        for window in sorted({ln.window for ln in chosen}, key=_window_order):
            same = [ln for ln in chosen if ln.window == window]
            out.append(_provider_quota(provider, priorities.get(provider, 100), metric, same))
    return out


def _provider_quota(
    provider: str, priority: int, metric: str, lines: Sequence[QuotaLine]
) -> ProviderQuota:
    """The sum of one provider's quota lines of one metric and window."""
    amount = sum(ln.amount for ln in lines)
    used = sum(ln.used for ln in lines)
    share = used / amount if amount > 0 else 1.0
    resets = [ln.resets_at for ln in lines if ln.resets_at is not None]
    return ProviderQuota(
        provider,
        priority,
        sum(ln.scope.startswith("key:") for ln in lines),
        metric,
        lines[0].window,
        amount,
        used,
        max(amount - used, 0.0),
        round(share * 100.0, 2),
        state_of(share).value,
        min(resets) if resets else None,
    )


@dataclass(frozen=True, slots=True)
class ProviderLifespan:
    provider: str
    days: float  # math.inf: its reset refills faster than the usage drains it
    note: str


@dataclass(frozen=True, slots=True)
class Lifespan:
    """Seed 002's estimate: how many days the remaining quotas last at a usage per day."""

    avg_tokens_per_day: float
    tokens_per_request: float
    providers: tuple[ProviderLifespan, ...]
    total_days: float  # the finite quotas together
    continuous: bool  # some provider resets daily with room for the whole daily usage


def lifespan(
    quotas: Sequence[ProviderQuota], avg_tokens_per_day: float, tokens_per_request: float
) -> Lifespan:
    """Days each provider's remaining quota lasts at ``avg_tokens_per_day``, and in total.

    Request quotas count ``tokens_per_request`` tokens a request; a daily quota whose whole
    amount covers a day's usage lasts indefinitely ("resets daily"); any other quota lasts
    ``remaining / avg_tokens_per_day`` days (seed 002's arithmetic). Cost quotas are skipped.
    """
    if avg_tokens_per_day <= 0:
        raise ValueError("avg_tokens_per_day must be positive")
    per: list[ProviderLifespan] = []
    finite_tokens = 0.0
    for q in quotas:
        scale = {"tokens": 1.0, "requests": tokens_per_request}.get(q.metric)
        if scale is None:
            continue
        if q.window == "day" and q.amount * scale >= avg_tokens_per_day:
            per.append(ProviderLifespan(q.provider, math.inf, "unlimited (resets daily)"))
            continue
        tokens = q.remaining * scale
        finite_tokens += tokens
        days = tokens / avg_tokens_per_day
        note = (
            f"{q.remaining:,.0f} {q.metric} left, resets {q.window}"
            if q.window != "once"
            else f"{q.remaining:,.0f} {q.metric} left, one-time"
        )
        per.append(ProviderLifespan(q.provider, days, note))
    return Lifespan(
        avg_tokens_per_day,
        tokens_per_request,
        tuple(per),
        finite_tokens / avg_tokens_per_day,
        any(math.isinf(p.days) for p in per),
    )


def tokens_per_request(total: UsageTotals) -> float:
    """The ledger's average tokens per request, or the default when it has none."""
    return total.total_tokens / total.requests if total.requests else DEFAULT_TOKENS_PER_REQUEST


@dataclass(frozen=True, slots=True)
class AlertLine:
    """A quota at or above an alert level (seed 002: 75 / 90 / 95 %)."""

    scope: str
    provider: str
    metric: str
    window: str
    level_pct: float
    used_pct: float
    message: str


def threshold_alerts(lines: Sequence[QuotaLine], levels: Sequence[float]) -> list[AlertLine]:
    """The highest level each quota has reached, most used first."""
    out = []
    for ln in lines:
        reached = [lv for lv in sorted(levels) if ln.used_pct >= lv * 100.0]
        if not reached:
            continue
        lv = reached[-1] * 100.0
        word = "DEPLETED" if ln.used_pct >= 100 else "CRITICAL" if lv >= 90 else "WARNING"
        msg = f"{word}: {ln.scope} ({ln.provider}) at {ln.used_pct:.1f}% of {ln.amount:,.0f} {ln.metric}/{ln.window}"
        out.append(AlertLine(ln.scope, ln.provider, ln.metric, ln.window, lv, ln.used_pct, msg))
    return sorted(out, key=lambda a: -a.used_pct)


@dataclass(slots=True)
class UsageReport:
    """Everything ``quotaflow report`` shows, exports and returns as JSON."""

    generated_at: float
    since: float | None
    until: float | None
    group_by: str
    groups: list[UsageTotals]
    total: UsageTotals
    providers: list[ProviderQuota] = field(default_factory=list)
    quotas: list[QuotaLine] = field(default_factory=list)
    alerts: list[AlertLine] = field(default_factory=list)
    lifespan: Lifespan | None = None
    # Client requests by how they ended (the dashboard and the session summary count alike).
    outcomes: RequestCounts = field(default_factory=RequestCounts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; infinite lifespans become ``null`` with ``unlimited: true``."""
        d: dict[str, Any] = {
            "generated_at": self.generated_at,
            "since": self.since,
            "until": self.until,
            "group_by": self.group_by,
            "totals": _totals_dict(self.total),
            "groups": [_totals_dict(g) for g in self.groups],
            "providers": [asdict(p) for p in self.providers],
            "quotas": [asdict(q) for q in self.quotas],
            "alerts": [asdict(a) for a in self.alerts],
            "lifespan": None,
            "request_outcomes": self.outcomes.to_dict(),
        }
        if self.lifespan is not None:
            ls = self.lifespan
            d["lifespan"] = {
                "avg_tokens_per_day": ls.avg_tokens_per_day,
                "tokens_per_request": ls.tokens_per_request,
                "total_days": ls.total_days,
                "continuous": ls.continuous,
                "providers": [
                    {
                        "provider": p.provider,
                        "days": None if math.isinf(p.days) else p.days,
                        "unlimited": math.isinf(p.days),
                        "note": p.note,
                    }
                    for p in ls.providers
                ],
            }
        return d


def _totals_dict(t: UsageTotals) -> dict[str, Any]:
    d = asdict(t)
    if not d.get("provider"):
        d.pop("provider", None)
    d["cost_usd"] = round(t.cost_usd, 10)
    # True when part of the cost is an estimate (a model with no known price, guessed tokens)
    d["cost_estimated"] = t.estimated_cost > 0
    return d


def build_report(
    *,
    now: float,
    since: float | None,
    until: float | None,
    group_by: str,
    groups: list[UsageTotals],
    quotas: list[QuotaLine],
    priorities: Mapping[str, int],
    alert_levels: Sequence[float],
    avg_tokens_per_day: float | None,
    outcomes: RequestCounts | None = None,
) -> UsageReport:
    """Assemble the report; ``groups`` already grouped (days regrouped by the caller)."""
    total = total_of(groups)
    provs = provider_quotas(quotas, priorities)
    life = None
    if avg_tokens_per_day is not None:
        life = lifespan(provs, avg_tokens_per_day, tokens_per_request(total))
    return UsageReport(
        now,
        since,
        until,
        group_by,
        groups,
        total,
        provs,
        quotas,
        threshold_alerts(quotas, alert_levels),
        life,
        outcomes or RequestCounts(),
    )


def with_group(rows: Iterable[UsageTotals], names: Mapping[str, str]) -> list[UsageTotals]:
    """Rows with their group renamed through ``names`` (e.g. a key id to its label)."""
    return [replace(r, group=names.get(r.group, r.group)) for r in rows]
