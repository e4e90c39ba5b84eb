"""Gathering a report's or a forecast's inputs from a running engine (ledger + counters).

The arithmetic is in :mod:`.usage`, :mod:`.burn` and :mod:`.forecast`; this module only asks
the engine's semantic queries and hands their answers over.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from quotaflow.engine.catalog import Key
from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.reports.burn import (
    DEFAULT_HALF_LIFE_S,
    DEFAULT_LOOKBACK_S,
    BurnRate,
    ewma_rate_of_sums,
)
from quotaflow.reports.forecast import (
    DEFAULT_HORIZON_S,
    LimitForecast,
    PoolForecast,
    PoolMember,
    forecast_limit,
    simulate_pool,
)
from quotaflow.reports.usage import UsageReport, build_report, by_day, quota_lines
from quotaflow.storage.base import BurnSums

if TYPE_CHECKING:  # the engine is the caller's: importing it here would load it for the CLI
    from quotaflow.gateway import Gateway as Engine


async def limit_usages(engine: Engine, now: float) -> dict[str, LimitUsage]:
    """Every limit's usage now, as the counters hold it."""
    return await engine.counters.snapshot(engine.all_limits(), now)


async def collect_report(
    engine: Engine,
    *,
    now: float,
    since: float | None,
    until: float | None,
    group_by: str,
    avg_tokens_per_day: float | None,
) -> UsageReport:
    """The usage report of ``[since, until)`` grouped by provider, key, agent, model or day."""
    ledger: Any = engine.ledger
    if group_by == "day":
        groups = by_day(await ledger.usage_totals("slot", since, until), engine.config.tz)
    else:
        groups = await ledger.usage_totals(group_by, since, until)
    usages = await limit_usages(engine, now)
    keys = list(engine.keys.values())
    provider_limits = {
        name: [usages[lim.id] for lim in p.limits if lim.id in usages]
        for name, p in engine.config.providers.items()
    }
    lines = quota_lines(keys, provider_limits, usages)
    priorities = {name: p.priority for name, p in engine.config.providers.items()}
    return build_report(
        now=now,
        since=since,
        until=until,
        group_by=group_by,
        groups=groups,
        quotas=lines,
        priorities=priorities,
        alert_levels=engine.settings.alert_levels,
        avg_tokens_per_day=avg_tokens_per_day,
        outcomes=await ledger.request_counts(since, until),
    )


@dataclass(slots=True)
class Forecast:
    """Everything ``quotaflow forecast`` shows."""

    now: float
    half_life_s: float
    lookback_s: float
    limits: list[LimitForecast] = field(default_factory=list)
    pools: list[PoolForecast] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isinf(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [clean(x) for x in v]
            return v

        out: dict[str, Any] = clean(
            {
                "now": self.now,
                "half_life_s": self.half_life_s,
                "lookback_s": self.lookback_s,
                "limits": [asdict(f) for f in self.limits],
                "pools": [asdict(p) for p in self.pools],
            }
        )
        return out

    @property
    def has_blackout(self) -> bool:
        return any(p.blackouts for p in self.pools)


def _rate(
    scopes: list[str],
    metric: str,
    now: float,
    lookback_s: float,
    half_life_s: float,
    seen: dict[str, BurnSums],
) -> BurnRate:
    """``scopes``' burn rate of ``metric`` (``seen``: each key's burn sums, read once for
    its limits and its pools)."""
    sums = [seen[scope] for scope in scopes]
    return ewma_rate_of_sums(sums, metric, now, half_life_s=half_life_s, max_span_s=lookback_s)


def _quota_limits(key: Key) -> list[Limit]:
    return [lim for lim in key.limits if not lim.window.is_rate]


async def collect_forecast(
    engine: Engine,
    *,
    now: float,
    lookback_s: float = DEFAULT_LOOKBACK_S,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
    horizon_s: float = DEFAULT_HORIZON_S,
) -> Forecast:
    """Per key quota: exhaustion vs reset; per pool of keys serving a route: blackouts."""
    usages = await limit_usages(engine, now)
    out = Forecast(now, half_life_s, lookback_s)
    # every key's burn events in one read, summed by the ledger (each key's sums serve its
    # limits and its pools: rates of several keys add their sums)
    keys = sorted(engine.keys.values(), key=lambda k: (k.provider, k.id))
    by_key = await engine.ledger.burn_sums_of_keys(
        [k.id for k in keys], now - lookback_s, now, half_life_s
    )
    seen = {k.scope: by_key[k.id] for k in keys}
    for key in keys:
        for lim in _quota_limits(key):
            rate = _rate([key.scope], lim.metric, now, lookback_s, half_life_s, seen)
            out.limits.append(forecast_limit(usages[lim.id], key.provider, rate, now))
    for name, key_ids in _pools(engine):
        await asyncio.sleep(0)  # a turn of the event loop between pools (each plays 35 days)
        pool = await _pool(
            engine, name, key_ids, usages, now, lookback_s, half_life_s, horizon_s, seen
        )
        if pool is not None:
            out.pools.append(pool)
    return out


def _pools(engine: Engine) -> list[tuple[str, tuple[str, ...]]]:
    """Distinct sets of enabled keys serving a route, named after the first such route."""
    seen: dict[tuple[str, ...], list[str]] = {}
    for name, route in engine.config.routes.items():
        providers = {d.provider for d in route.deployments}
        ids = tuple(
            sorted(k.id for k in engine.keys.values() if k.provider in providers and k.enabled)
        )
        if ids:
            seen.setdefault(ids, []).append(name)
    return sorted(
        ((names[0], ids) for ids, names in seen.items()), key=lambda x: (-len(x[1]), x[0])
    )


async def _pool(
    engine: Engine,
    name: str,
    key_ids: tuple[str, ...],
    usages: dict[str, LimitUsage],
    now: float,
    lookback_s: float,
    half_life_s: float,
    horizon_s: float,
    seen: dict[str, BurnSums],
) -> PoolForecast | None:
    keys = [engine.keys[k] for k in key_ids]
    metric = next(
        (
            m
            for m in ("tokens", "requests")
            if any(lim.metric == m for k in keys for lim in _quota_limits(k))
        ),
        None,
    )
    if metric is None:
        return None
    members, unbounded = [], []
    for k in keys:
        mine = [usages[lim.id] for lim in _quota_limits(k) if lim.metric == metric]
        if not mine or engine.health[k.id].disabled_reason:
            if not mine:
                unbounded.append(k.id)
            continue
        u = min(mine, key=lambda x: x.remaining)
        members.append(PoolMember(k.id, u.remaining, u.limit.amount, u.limit.window, u.resets_at))
    rate = _rate([k.scope for k in keys], metric, now, lookback_s, half_life_s, seen)
    return simulate_pool(
        name,
        metric,
        members,
        rate.per_s,
        now,
        engine.config.tz,
        horizon_s=horizon_s,
        unbounded=unbounded,
    )
