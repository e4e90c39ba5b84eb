"""Storage, split by capability: counters (hot, atomic) and the ledger (durable truth).

Implementations: :mod:`quotaflow.storage.counters.memory` (counters of the embedded default),
:mod:`quotaflow.storage.ledgers.sqlite` (the embedded ledger).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.reservation import Claim, Shortfall
from quotaflow.errors import Unavailable
from quotaflow.types import Measure


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class ReserveOutcome:
    reservation_id: str | None  # None: refused, nothing was reserved
    shortfall: Shortfall | None = None

    @property
    def ok(self) -> bool:
        return self.reservation_id is not None


class CounterStore(Protocol):
    """Usage counters per limit and window, with all-or-nothing reservations."""

    shared: bool  # True: several replicas keep these counters (Redis)

    async def reserve(
        self, claims: Sequence[Claim], now: float, ttl_s: float | None = None
    ) -> ReserveOutcome:
        """Reserve every claim or none; refused when any would overshoot its limit."""
        ...

    async def settle(self, reservation_id: str, actual: Measure, now: float) -> None:
        """Replace the reservation by what was really used (in the window it was made in)."""
        ...

    async def release(self, reservation_id: str) -> None:
        """Drop a reservation; nothing is charged."""
        ...

    async def snapshot(self, limits: Collection[Limit], now: float) -> dict[str, LimitUsage]: ...

    def recent(self, limits: Collection[Limit], now: float) -> dict[str, LimitUsage] | None:
        """The usage of ``limits`` as this store saw it lately, without asking anyone, or
        ``None`` when it has no recent view of every one (then take a :meth:`snapshot`). It
        may lag other replicas: rank candidates with it, never refuse or wait on it."""
        ...

    async def reset(self, limits: Collection[Limit], now: float) -> None:
        """Forget the committed usage of the current window (seed 000's reset_quota)."""
        ...

    async def charge(
        self, limits: Collection[Limit], actual: Measure, at: float, now: float
    ) -> None:
        """Commit usage that was not reserved first (reported by an agent, or a rebuild)."""
        ...

    async def adopt(self, limits: Collection[Limit], ledger: LedgerStore, now: float) -> None:
        """Start enforcing ``limits``: load their current window from the ledger (shared
        counters skip windows other replicas already keep)."""
        ...

    def forget(self, limits: Collection[Limit]) -> None:
        """Stop enforcing ``limits`` (their key was removed): drop what this process keeps
        of them. Reservations still open settle normally; the ledger keeps their usage."""
        ...

    async def close(self) -> None: ...


class LedgerUnavailable(Unavailable):
    """The ledger cannot be written or read (PostgreSQL unreachable, a full disk under
    SQLite): requests fail closed (503) and succeed again once it can."""

    code = "ledger_unavailable"


@dataclass(slots=True)
class LedgerRow:
    """One attempt (or one reported use). The ledger is the source of truth for usage."""

    request_id: str
    attempt: int
    ts: float
    agent: str = "default"
    route: str = ""
    provider: str = ""
    key_id: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0  # 1 when the attempt counted against request limits
    cost_usd: float = 0.0
    latency_ms: float | None = None
    ttfb_ms: float | None = None
    status: str = "pending"  # pending | ok | error | aborted | crashed | reported
    error_kind: str | None = None
    http_status: int | None = None
    estimated: bool = False
    stream: bool = False
    reserved_tokens: int = 0
    source: str = "proxy"  # proxy | reported | probe
    door: str = "chat"  # chat | messages | responses | embeddings | gemini | library
    detail: str | None = None
    id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    since: float | None = None
    until: float | None = None
    agent: str | None = None
    provider: str | None = None
    key_id: str | None = None
    limit: int = 100
    newest_first: bool = True


USAGE_GROUPS = ("total", "provider", "key", "agent", "model", "slot")
SLOT_S = 900.0  # "slot" groups by 15 minutes, fine enough to regroup into local days anywhere


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """What a group of finished ledger rows consumed (``group`` is its value: a key id, …).

    For ``slot`` grouping, ``group`` is the slot's start in epoch seconds, as a string.
    """

    group: str
    attempts: int = 0
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    provider: str = ""  # for ``key`` grouping: the key's provider
    estimated_cost: int = 0  # rows whose cost is an estimate (a stand-in price or guessed tokens)


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """One bucket of the dashboard's timeline, aggregated where the rows are: tokens of
    settled rows per provider (refusals left out), and the latency percentiles of the
    answered proxied attempts among the bucket's newest rows (``samples`` of them)."""

    tokens: dict[str, float]
    samples: int = 0
    percentiles: tuple[float, ...] = ()  # one per quantile asked, when samples > 0


@dataclass(frozen=True, slots=True)
class BurnSums:
    """A scope's burn events (:meth:`LedgerStore.burn_events`) summed where the rows are:
    how many, the first and the last one's time, and each measure weighted by its age
    (``m · e^(-λ·(now - t))``, λ = ln 2 / half-life) — all an exponentially weighted rate
    needs, and sums of several scopes add up."""

    events: int = 0
    first: float = 0.0
    last: float = 0.0
    tokens: float = 0.0
    requests: float = 0.0
    cost: float = 0.0


# How long after a request's first attempt its later attempts are looked for: they begin
# within the request's deadline (settings.request_timeout_s, 120 s by default).
REQUEST_SPREAD_S = 300.0


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """Client requests by how they ended, counted from the ledger the same way everywhere
    (the dashboard, reports, the session summary's check): ``answered`` when a key answered,
    ``refused`` when no key could take it (429), ``failed`` when every attempt failed."""

    answered: int = 0
    refused: int = 0
    failed: int = 0

    @property
    def requests(self) -> int:
        return self.answered + self.refused + self.failed

    def __add__(self, other: RequestCounts) -> RequestCounts:
        return RequestCounts(
            self.answered + other.answered,
            self.refused + other.refused,
            self.failed + other.failed,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "answered": self.answered,
            "refused": self.refused,
            "failed": self.failed,
        }


class LedgerStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def begin(self, row: LedgerRow) -> int:
        """Journal a pending attempt; durable when it returns. The attempt is identified by
        ``(request_id, attempt)``; the returned row id may be 0 when the store assigns ids."""
        ...

    async def finish(self, row: LedgerRow) -> None:
        """Finalize a pending attempt (by ``request_id`` and ``attempt``); durable when it returns."""
        ...

    async def append(self, rows: Sequence[LedgerRow]) -> None:
        """Insert final rows (reported usage); durable when it returns."""
        ...

    async def query(self, q: LedgerQuery) -> list[LedgerRow]: ...

    async def sum_scope(self, scope: str, since: float) -> Measure:
        """What the rows of one limit scope consumed since an instant (resets honoured)."""
        ...

    async def events_scope(self, scope: str, since: float) -> list[tuple[float, Measure]]: ...

    async def record_reset(self, scope: str, at: float) -> None: ...

    async def settle_crashed(self) -> int:
        """Settle attempts a crash left pending at their reserved worst case; returns how many."""
        ...

    # -- reports ---------------------------------------------------------------
    async def usage_totals(
        self, group: str, since: float | None = None, until: float | None = None
    ) -> list[UsageTotals]:
        """Finished rows in ``[since, until)`` summed per ``group`` (one of :data:`USAGE_GROUPS`)."""
        ...

    async def request_counts(
        self, since: float | None = None, until: float | None = None
    ) -> RequestCounts:
        """Client requests (``source='proxy'``) begun in ``[since, until)`` by how they ended."""
        ...

    async def burn_events(
        self, scope: str, since: float, until: float
    ) -> list[tuple[float, Measure]]:
        """Consumption events of a limit scope in ``[since, until)``, oldest first (resets ignored)."""
        ...

    async def minute_stats(
        self, since: float, until: float, size: float, newest: int, quantiles: Sequence[float]
    ) -> dict[float, MinuteStats]:
        """Per ``size``-second bucket with rows: tokens per provider and the nearest-rank
        ``quantiles`` of the latencies (ms) of answered proxied attempts among its
        ``newest`` rows, computed by the store (a few rows per bucket come back)."""
        ...

    async def span_totals(self, spans: Sequence[tuple[float, float]]) -> list[tuple[Measure, bool]]:
        """Usage of settled rows (refusals left out) in each ``[start, end)``, and whether
        any of it is an estimated cost: one read for all the spans."""
        ...

    async def burn_sums_of_keys(
        self, key_ids: Sequence[str], since: float, until: float, half_life_s: float
    ) -> dict[str, BurnSums]:
        """:meth:`burn_events_of_keys` of each key summed by the store (:class:`BurnSums`,
        weighted by age at ``until``), not returned event by event."""
        ...

    async def burn_events_of_keys(
        self, key_ids: Sequence[str], since: float, until: float
    ) -> dict[str, list[tuple[float, Measure]]]:
        """:meth:`burn_events` of each key's scope (``key:<id>``), read together."""
        ...

    async def probe_results(self, since: float | None = None) -> list[LedgerRow]:
        """The latest key-tester row (``source='probe'``) per key × model, since an instant."""
        ...

    # -- learning ----------------------------------------------------------------
    async def request_rows(self, request_id: str) -> list[LedgerRow]:
        """Every attempt of one request, first attempt first (feedback names a request)."""
        ...
