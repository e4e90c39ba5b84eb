"""The dashboard's charts: tokens per provider over time, latency p50/p95, cost per day, and
the forecast of when each key and each pool of keys runs out.

Everything comes from the ledger's semantic queries (``minute_stats``, ``span_totals``) and from
:func:`quotaflow.reports.collect.collect_forecast`. A refresh every second must stay cheap,
so :class:`SeriesCache` keeps what can no longer change: a ledger row is stamped when its
attempt *starts*, so a time bucket is final once it ended :data:`SETTLE_MARGIN_S` ago; only
the newer buckets (and today) are read again. The forecast is recomputed at most every
:data:`FORECAST_MIN_AGE_S` while usage changes, and every :data:`FORECAST_MAX_AGE_S` anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quotaflow.engine.windows import Window, next_reset, window_start
from quotaflow.gateway import Gateway
from quotaflow.reports.collect import collect_forecast
from quotaflow.storage.management import ManagementStore

BUCKET_S = 60.0
BUCKETS = 60  # the token and latency charts cover the last hour
DAYS = 14  # the cost chart covers two weeks
SETTLE_MARGIN_S = 300.0
LATENCY_SAMPLE = 500  # newest rows per bucket the percentiles are read from
FORECAST_MIN_AGE_S = 5.0
FORECAST_MAX_AGE_S = 30.0
DAY = Window("day")


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: dict[str, float]  # provider → tokens
    p50: float | None
    p95: float | None
    samples: int


class SeriesCache:
    """Chart series and forecast for one gateway, with their final parts kept."""

    def __init__(self, gw: Gateway, store: ManagementStore) -> None:
        self.gw = gw
        self.store = store
        self._buckets: dict[float, Bucket] = {}
        # day start → (tokens, cost, whether part of the cost is an estimate)
        self._days: dict[float, tuple[float, float, bool]] = {}
        self._forecast: dict[str, Any] | None = None
        self._forecast_at = -math.inf
        self._forecast_stamp: object = None

    async def _read_buckets(self, starts: list[float]) -> dict[float, Bucket]:
        """The buckets starting at ``starts`` (ascending), aggregated by the ledger: a few
        rows per bucket come back, whatever the traffic."""
        since, until = starts[0], starts[-1] + BUCKET_S
        got = await self.gw.ledger.minute_stats(
            since, until, BUCKET_S, LATENCY_SAMPLE, (0.50, 0.95)
        )
        out = {}
        for start in starts:
            m = got.get(start)
            if m is None or not m.samples:
                p50 = p95 = None
            else:
                p50, p95 = m.percentiles
            tokens = m.tokens if m is not None else {}
            mine = {p: t for p, t in tokens.items() if p and t > 0}
            out[start] = Bucket(mine, p50, p95, m.samples if m is not None else 0)
        return out

    async def timeline(self, now: float) -> dict[str, Any]:
        """Tokens per provider and latency percentiles per minute over the last hour."""
        last = math.floor(now / BUCKET_S) * BUCKET_S
        starts = [last - BUCKET_S * i for i in range(BUCKETS - 1, -1, -1)]
        missing = [s for s in starts if s not in self._buckets]
        got = await self._read_buckets(missing) if missing else {}
        for start, b in got.items():
            if start + BUCKET_S <= now - SETTLE_MARGIN_S:
                self._buckets[start] = b
        out: list[Bucket] = [self._buckets.get(s) or got[s] for s in starts]
        for old in [s for s in self._buckets if s < starts[0]]:
            del self._buckets[old]
        providers = sorted({p for b in out for p in b.tokens})
        return {
            "bucket_s": BUCKET_S,
            "starts": starts,
            "tokens": {p: [b.tokens.get(p, 0.0) for b in out] for p in providers},
            "latency_p50_ms": [b.p50 for b in out],
            "latency_p95_ms": [b.p95 for b in out],
            "latency_samples": [b.samples for b in out],
        }

    async def outcomes(self, now: float) -> dict[str, Any]:
        """Requests begun in the timeline's hour by how they ended (answered, refused,
        failed), counted as reports count them: one read (whole 15-minute slots come from
        the ledger's request-outcome rollup, only the rest from rows)."""
        last = math.floor(now / BUCKET_S) * BUCKET_S
        since = last - BUCKET_S * (BUCKETS - 1)
        total = await self.gw.ledger.request_counts(since, None)
        return {"since": since, **total.to_dict()}

    def _day_starts(self, now: float) -> list[float]:
        tz = self.gw.config.tz
        starts = [window_start(now, DAY, tz)]
        while len(starts) < DAYS:
            starts.append(window_start(starts[-1] - 1.0, DAY, tz))
        return starts[::-1]

    async def cost_per_day(self, now: float) -> list[dict[str, Any]]:
        """Cost and tokens per calendar day (the configured time zone), oldest first; the
        days not kept yet read in one statement."""
        tz = self.gw.config.tz
        starts = self._day_starts(now)
        ends = {start: next_reset(start, DAY, tz) or start + 86400.0 for start in starts}
        missing = [s for s in starts if s not in self._days]
        if missing:
            totals = await self.gw.ledger.span_totals([(s, ends[s]) for s in missing])
            for start, (m, guessed) in zip(missing, totals, strict=True):
                got = (m.tokens, m.cost, guessed)
                self._days[start] = got  # the days still open are dropped below
        out = []
        for start in starts:
            got = self._days[start]
            if ends[start] > now - SETTLE_MARGIN_S:
                del self._days[start]  # read again next time: it can still change
            day = datetime.fromtimestamp(start, tz).strftime("%Y-%m-%d")
            out.append(
                {
                    "day": day,
                    "start": start,
                    "tokens": got[0],
                    "cost_usd": round(got[1], 6),
                    "cost_estimated": got[2],
                }
            )
        for old in [s for s in self._days if s < starts[0]]:
            del self._days[old]
        return out

    async def forecast(self, now: float, stamp: object = None) -> dict[str, Any]:
        """Per key: the quota that runs out first; per pool: when every key is empty.

        ``stamp`` is anything that changes with usage (the hub's fingerprint); without one,
        the gateway's change counter is used."""
        stamp = self.gw.changes if stamp is None else stamp
        age = now - self._forecast_at
        changed = stamp != self._forecast_stamp
        fresh = age < FORECAST_MIN_AGE_S or (age < FORECAST_MAX_AGE_S and not changed)
        if self._forecast is not None and fresh:
            return self._forecast
        self._forecast_stamp = stamp
        f = (await collect_forecast(self.gw, now=now)).to_dict()
        self._forecast = {
            "at": now,
            "keys": first_out(f["limits"]),
            "pools": pools_json(f["pools"]),
        }
        self._forecast_at = now
        return self._forecast


def first_out(limits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per key, its limit forecast to run out first (or its fullest one when none runs out)."""
    best: dict[str, dict[str, Any]] = {}
    for lim in limits:
        key_id = lim["scope"].removeprefix("key:")
        mine = {**lim, "key_id": key_id}
        cur = best.get(key_id)
        if cur is None or _sooner(mine, cur):
            best[key_id] = mine
    return [best[k] for k in sorted(best)]


def _sooner(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ea, eb = a["exhausts_at"], b["exhausts_at"]
    if ea is None or eb is None:
        return ea is not None or (eb is None and a["remaining"] < b["remaining"])
    return bool(ea < eb)


def pools_json(pools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "route": p["route"],
            "metric": p["metric"],
            "keys": list(p["keys"]),
            "remaining": p["remaining"],
            "rate_per_hour": p["rate_per_hour"],
            "exhausts_at": p["exhausts_at"],
            "blackouts": list(p["blackouts"])[:3],
            "unbounded_keys": list(p["unbounded_keys"]),
        }
        for p in pools
    ]
