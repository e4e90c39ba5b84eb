"""The last hour of the embedded ledger, per minute, kept in memory by the serving process.

The dashboard's chart of the last hour (tokens per provider, latency percentiles, requests
by how they ended) would otherwise read that hour's rows on every first load: what it costs
would grow with the traffic. The rollup tables are per 15 minutes and cannot answer per
minute; a per-minute rollup table would cost every request one more upsert. So the writer
tells this view what each group commit committed (no SQL, no I/O: a few dictionary
operations per row) and the reads of the last hour are answered from it, exactly as SQL
answers them:

- per minute (``CAST(ts / 60 AS INTEGER) * 60``, the bucket SQL groups by): how many rows,
  tokens and settled rows per provider (pending and refused rows use nothing), and the
  latency of each of its newest :data:`NEWEST` rows (in commit order, which is id order:
  SQLite numbers the rows of one transaction in the order they are inserted) when it is an
  answered proxied attempt;
- requests by how they ended, per minute of their first settled attempt, counted as the
  ``ledger_outcomes`` rollup counts them (answered when an attempt answered, else refused
  when one was refused, else failed) — for that it follows each request that can still
  change: those with an attempt in flight, and those not answered yet whose first attempt
  began less than :data:`~quotaflow.storage.base.REQUEST_SPREAD_S` (+ a minute) ago. An
  answered request with nothing in flight is final and forgotten at once (the gateway
  begins no attempt after an answer). Like SQL's count of the rows at a span's edges, it
  takes a request's attempts to begin within ``REQUEST_SPREAD_S`` of its first.

Memory: 61 minutes × (providers + :data:`NEWEST` latencies), the attempts in flight, and the
requests whose every attempt failed in the last few minutes — never the hour's rows.

It is seeded from the ledger once (off the event loop, in one read snapshot, with what the
writer commits meanwhile replayed on top), and is exact only while this process's writer is
the only one: a commit by any other connection (a command-line tool, compaction) changes
SQLite's ``data_version``, and the ledger then reads SQL until it has seeded a new view.
"""

from __future__ import annotations

import math
import sqlite3
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from quotaflow.storage.base import REQUEST_SPREAD_S, LedgerRow, MinuteStats, RequestCounts

MINUTE_S = 60.0
KEPT_MINUTES = 60  # before the current one: the dashboard's hour, and a minute of margin
NEWEST = 500  # the newest rows per minute whose latencies are kept (the dashboard's sample)
FOLLOW_S = REQUEST_SPREAD_S + MINUTE_S  # how long a request not answered yet is followed


def bucket(ts: float) -> float:
    """The minute of ``ts`` as SQL computes it (``CAST(ts / 60 AS INTEGER) * 60``)."""
    return float(int(ts / MINUTE_S) * 60)


# One row among its minute's newest: a one-item list holding its latency when it is an
# answered proxied attempt, else None (a pending row's until it settles).
_Latency = list[float | None]


@dataclass(slots=True)
class _Minute:
    rows: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # provider → tokens of settled rows
    settled: dict[str, int] = field(default_factory=dict)  # provider → settled rows (use)
    newest: deque[_Latency] = field(default_factory=lambda: deque(maxlen=NEWEST))


# An attempt in flight, what its settling needs that the finish does not repeat: (request
# id, ts, minute, provider, source, reserved tokens, its latency among the newest).
_Pending = tuple[str, float, float, str, str, int, _Latency]


class _Request:
    __slots__ = ("first", "ok", "pending", "refused")

    def __init__(self, first: float | None, ok: int, refused: int, pending: int) -> None:
        self.first = first  # the earliest settled attempt's ts
        self.ok = ok
        self.refused = refused
        self.pending = pending

    def outcome(self) -> int:
        return 0 if self.ok else 1 if self.refused else 2


@dataclass(frozen=True, slots=True)
class Seed:
    """What the view is seeded with, read from the ledger in one snapshot."""

    floor: float  # the first minute it holds
    counts: list[tuple[float, int]]  # (minute, rows)
    tokens: list[tuple[float, str, int, int]]  # (minute, provider, tokens, settled rows)
    # each minute's newest rows, oldest first: (minute, row id, answered latency or None)
    newest: list[tuple[float, int, float | None]]
    # rows in flight: (id, request id, attempt, ts, provider, source, reserved tokens)
    pending: list[tuple[int, str, int, float, str, str, int]]
    outcomes: list[tuple[float, int, int, int]]  # (minute, answered, refused, failed)
    # requests still followed: (request id, first settled ts, ok, refused)
    requests: list[tuple[str, float | None, int, int]]


class RecentView:
    """Per minute of the last hour, what the dashboard reads (see the module's docstring)."""

    def __init__(self, version: int) -> None:
        self.version = version  # SQLite's data_version of the writer when seeded
        self.ready = False
        self.floor = -math.inf  # the view holds every row from this minute on
        self._minutes: dict[float, _Minute] = {}
        self._outcomes: dict[float, list[int]] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._requests: dict[str, _Request] = {}
        self._prune_at = -math.inf
        self._journal: list[tuple[bool, list[LedgerRow], list[LedgerRow], list[LedgerRow]]] = []
        # (rows are copied into the journal: their callers may change them once committed)

    # -- seeding -----------------------------------------------------------------------------
    def load(self, seed: Seed) -> None:
        """Take the seed, then what was committed since its snapshot (in order)."""
        self.floor = seed.floor
        self._prune_at = seed.floor + (KEPT_MINUTES + 1) * MINUTE_S
        for m, n in seed.counts:
            self._minute(float(m)).rows = int(n)
        for m, provider, tokens, settled in seed.tokens:
            mine = self._minute(float(m))
            mine.tokens[str(provider)] = int(tokens)
            mine.settled[str(provider)] = int(settled)
        holders: dict[int, _Latency] = {}
        for m, row_id, latency in seed.newest:
            holder: _Latency = [None if latency is None else float(latency)]
            holders[int(row_id)] = holder
            self._minute(float(m)).newest.append(holder)
        for row_id, rid, attempt, ts, provider, source, reserved in seed.pending:
            self._pending[str(rid), int(attempt)] = (
                str(rid), float(ts), bucket(float(ts)), str(provider), str(source),
                int(reserved), holders.get(int(row_id)) or [None],
            )  # fmt: skip
        for m, a, r, f in seed.outcomes:
            if float(m) >= self.floor:
                self._outcomes[float(m)] = [int(a), int(r), int(f)]
        for rid, first, ok, refused in seed.requests:
            self._requests[str(rid)] = _Request(
                None if first is None else float(first), int(ok), int(refused), 0
            )
        for rid, _, _, _, source, _, _ in self._pending.values():
            if source == "proxy":
                self._requests.setdefault(rid, _Request(None, 0, 0, 0)).pending += 1
        self.ready = True
        journal, self._journal = self._journal, []
        for crashed, new, appended, finished in journal:
            self.committed(crashed, new, appended, finished)

    # -- what the writer committed -----------------------------------------------------------
    def committed(
        self,
        crashed: bool,
        inserts: Sequence[LedgerRow],
        settled: Sequence[LedgerRow],
        finishes: Sequence[LedgerRow],
    ) -> None:
        """One group commit, in the order its statements ran: the crash settlement (every
        pending row), the pending rows inserted, the settled rows inserted (each as a pending
        row settled at once), then the finishes (of rows pending before)."""
        if not self.ready:
            copied = [[replace(r) for r in rows] for rows in (inserts, settled, finishes)]
            self._journal.append((crashed, copied[0], copied[1], copied[2]))
            return
        if crashed:
            for key in list(self._pending):
                p = self._pending.pop(key)
                self._settle(p, "crashed", p[5], None)
        for r in inserts:
            self._insert(r, True)
        for r in settled:
            self._settle(self._insert(r, False), r.status, r.total_tokens, r.latency_ms)
        for r in finishes:
            if r.status != "pending":
                was = self._pending.pop((r.request_id, r.attempt), None)
                if was is not None:
                    self._settle(was, r.status, r.total_tokens, r.latency_ms)

    def _minute(self, m: float) -> _Minute:
        mine = self._minutes.get(m)
        if mine is None:
            mine = self._minutes[m] = _Minute()
        return mine

    def _insert(self, r: LedgerRow, keep: bool) -> _Pending:
        ts = r.ts
        if ts >= self._prune_at:
            self.advance(ts)
        holder: _Latency = [None]
        m = int(ts / MINUTE_S) * MINUTE_S  # bucket(ts)
        if m >= self.floor:
            mine = self._minutes.get(m) or self._minute(m)
            mine.rows += 1
            mine.newest.append(holder)
        rid, source = r.request_id, r.source
        if source == "proxy":
            req = self._requests.get(rid)
            if req is None:
                self._requests[rid] = _Request(None, 0, 0, 1)
            else:
                req.pending += 1
        p = (rid, ts, m, r.provider, source, r.reserved_tokens, holder)
        if keep:
            self._pending[rid, r.attempt] = p
        return p

    def _settle(self, p: _Pending, status: str, tokens: int, latency: float | None) -> None:
        rid, ts, m, provider, source, _, holder = p
        if status != "refused" and m >= self.floor and (mine := self._minutes.get(m)):
            mine.tokens[provider] = mine.tokens.get(provider, 0) + tokens
            mine.settled[provider] = mine.settled.get(provider, 0) + 1
        if source != "proxy":
            return
        if status == "ok":
            holder[0] = latency  # an answered proxied attempt (None: no latency measured)
        req = self._requests.get(rid)
        if req is None:  # followed since its first attempt began: cannot happen
            req = self._requests[rid] = _Request(None, 0, 0, 1)
        req.pending -= 1
        if req.first is None:  # its first settled attempt: the common case
            req.first = ts
            req.ok, req.refused = int(status == "ok"), int(status == "refused")
            self._count(ts, req.outcome(), 1)
        else:
            before = (req.first, req.outcome())
            req.first = min(req.first, ts)
            req.ok += status == "ok"
            req.refused += status == "refused"
            after = (req.first, req.outcome())
            if before != after:
                self._count(before[0], before[1], -1)
                self._count(after[0], after[1], 1)
        if req.ok and not req.pending:
            del self._requests[rid]  # answered, nothing in flight: final

    def _count(self, first: float, outcome: int, n: int) -> None:
        m = int(first / MINUTE_S) * MINUTE_S  # bucket(first)
        if m < self.floor:
            return
        counts = self._outcomes.get(m)
        if counts is None:
            counts = self._outcomes[m] = [0, 0, 0]
        counts[outcome] += n

    def advance(self, now: float) -> None:
        """Forget the minutes before the hour that ends with ``now``'s minute, and the
        requests that can no longer change."""
        floor = bucket(now) - KEPT_MINUTES * MINUTE_S
        if floor > self.floor:
            self.floor = floor
            for m in [m for m in self._minutes if m < floor]:
                del self._minutes[m]
            for m in [m for m in self._outcomes if m < floor]:
                del self._outcomes[m]
            done = now - FOLLOW_S
            for rid in [
                rid
                for rid, q in self._requests.items()
                if not q.pending and q.first is not None and q.first < done
            ]:
                del self._requests[rid]
        self._prune_at = max(self._prune_at, bucket(now) + MINUTE_S)

    # -- reads -------------------------------------------------------------------------------
    def minute_stats(
        self, since: float, until: float, newest: int, quantiles: Sequence[float]
    ) -> dict[float, MinuteStats] | None:
        """``SqlLedger.minute_stats`` by minute over ``[since, until)``, or ``None`` when the
        view cannot answer it (not whole minutes, before its hour, a larger sample)."""
        if not self._covers(since, until) or newest > NEWEST:
            return None
        out: dict[float, MinuteStats] = {}
        for m in sorted(self._minutes):
            mine = self._minutes[m]
            if not since <= m < until or not mine.rows:
                continue
            sample = list(mine.newest)[-newest:] if newest > 0 else []
            values = sorted(v for (v,) in sample if v is not None)
            n = len(values)
            picks = tuple(values[max(math.ceil(q * n), 1) - 1] for q in quantiles) if n else ()
            tokens = {p: float(t) for p, t in mine.tokens.items() if mine.settled.get(p)}
            out[m] = MinuteStats(tokens, n, picks)
        return out

    def request_counts(self, since: float, until: float) -> RequestCounts | None:
        """Requests whose first attempt began in ``[since, until)``, or ``None`` when the
        view cannot answer (not whole minutes, or before its hour)."""
        if not self._covers(since, until):
            return None
        a = r = f = 0
        for m, (ma, mr, mf) in self._outcomes.items():
            if since <= m < until:
                a, r, f = a + ma, r + mr, f + mf
        return RequestCounts(a, r, f)

    def _covers(self, since: float, until: float) -> bool:
        whole = since % MINUTE_S == 0 and until % MINUTE_S == 0
        return self.ready and whole and since >= self.floor

    def sizes(self) -> tuple[int, int, int]:
        """Minutes, attempts in flight and requests followed (what memory it holds)."""
        return len(self._minutes), len(self._pending), len(self._requests)


# -- the seed's reads (one read transaction on a connection of its own) -----------------------
_B = "CAST(ts / 60 AS INTEGER) * 60"
_USE = "status NOT IN ('pending','refused')"
_ANSWERED_LATENCY = (
    "CASE WHEN status='ok' AND source='proxy' AND latency_ms IS NOT NULL THEN latency_ms END"
)


def read_seed(db: sqlite3.Connection, now: float) -> Seed:
    """The view's seed as of the read transaction ``db`` has open (run on a thread): every
    aggregate is computed by SQLite; the rows that come back are at most the newest
    :data:`NEWEST` of each minute, the rows in flight and the requests still followed.
    Requests are grouped by an expression (``request_id || ''``): grouped by the column,
    SQLite walks the whole request-id index instead of the hour's rows."""
    floor = bucket(now) - KEPT_MINUTES * MINUTE_S
    follow = now - FOLLOW_S
    by_provider = db.execute(
        f"SELECT {_B} AS b, provider, COUNT(*), "
        f"COALESCE(SUM(CASE WHEN {_USE} THEN total_tokens ELSE 0 END),0), "
        f"SUM(CASE WHEN {_USE} THEN 1 ELSE 0 END) FROM ledger WHERE ts>=? GROUP BY b, provider",
        (floor,),
    ).fetchall()
    counts: dict[float, int] = {}
    for m, _, n, _, _ in by_provider:
        counts[float(m)] = counts.get(float(m), 0) + int(n)
    tokens = [(m, p, t, k) for m, p, _, t, k in by_provider if k]
    newest = db.execute(
        f"SELECT b, id, x FROM (SELECT {_B} AS b, id, {_ANSWERED_LATENCY} AS x, "
        "ROW_NUMBER() OVER (PARTITION BY " + _B + " ORDER BY id DESC) AS k "
        "FROM ledger WHERE ts>=?) WHERE k<=? ORDER BY id",
        (floor, NEWEST),
    ).fetchall()
    pending = db.execute(
        "SELECT id, request_id, attempt, ts, provider, source, reserved_tokens FROM ledger "
        "WHERE status='pending'"
    ).fetchall()
    outcomes = db.execute(
        "SELECT CAST(f / 60 AS INTEGER) * 60 AS m, SUM(ok>0), SUM(ok=0 AND ref>0), "
        "SUM(ok=0 AND ref=0) FROM (SELECT MIN(ts) AS f, SUM(status='ok') AS ok, "
        "SUM(status='refused') AS ref FROM ledger WHERE source='proxy' AND status!='pending' "
        "AND ts>=? GROUP BY request_id || '') WHERE f>=? GROUP BY m",
        (floor - REQUEST_SPREAD_S, floor),
    ).fetchall()
    # Requests with an attempt in flight (all their rows), and those not answered yet whose
    # first attempt began since ``follow``.
    requests = db.execute(
        "SELECT request_id, MIN(CASE WHEN status!='pending' THEN ts END), SUM(status='ok'), "
        "SUM(status='refused') FROM ledger WHERE source='proxy' AND request_id IN "
        "(SELECT request_id FROM ledger WHERE status='pending' AND source='proxy') "
        "GROUP BY request_id "
        "UNION ALL SELECT request_id, MIN(ts), SUM(status='ok'), SUM(status='refused') "
        "FROM ledger WHERE source='proxy' AND status!='pending' AND ts>=? AND request_id "
        "NOT IN (SELECT request_id FROM ledger WHERE status='pending' AND source='proxy') "
        "GROUP BY request_id || '' HAVING MIN(ts)>=? AND SUM(status='ok')=0",
        (follow - REQUEST_SPREAD_S, follow),
    ).fetchall()
    return Seed(floor, list(counts.items()), tokens, newest, pending, outcomes, requests)
