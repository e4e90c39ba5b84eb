"""Counters shared by several replicas, in Redis: one atomic Lua script per operation.

Semantics are those of :class:`~quotaflow.storage.counters.memory.MemoryCounterStore` (a reserve over
several limits is all or nothing, a settle commits into the window the reservation was booked
in, a rolling window forgets its events), with the window arithmetic (time zones, DST, month
lengths) done here in Python and handed to the scripts as arguments. Keys::

    <prefix>epoch                       the counters' generation; absent = not loaded
    <prefix>b:<limit id>@<window start> one limit's window {used, reserved} (+ :h :a :e)
    <prefix>r:<reservation id>          a reservation: its holds, to settle or release

Calendar windows expire by themselves an hour after they end; ``once`` windows never.

A request makes two script calls, reserve and settle, not three: both reply with the usage
of the limits they touched, which the store keeps as its *recent view* (per limit: its
window, when it was seen). :meth:`recent` answers the picker's snapshot from that view while
every limit asked is known, less than :data:`VIEW_TTL_S` old and still in the same window;
otherwise the picker takes a real :meth:`snapshot` (which refreshes the view). The view only
ranks: the reserve script stays the one atomic check, and the picker looks at Redis itself
before it refuses, waits, clamps a request or after a reserve lost a race.

Faults (see docs/scale-out.md): when Redis is unreachable or has lost its data (no
``epoch``), :meth:`reserve` and :meth:`snapshot` raise :class:`~quotaflow.errors.Unavailable`
(503: fail closed, nothing overshoots). Settles and releases that fail are logged, never
raised: the hold they could not close stays booked and is charged at its worst case when it
expires, so usage is over- rather than under-counted. A failed :meth:`charge` is retried
until it lands. When Redis is back without data, one replica (under a lock) reloads every
limit from the ledger — pending rows at their worst case — and the others resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quotaflow.clock import Clock, SystemClock
from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.reservation import Claim, fits
from quotaflow.engine.windows import next_reset, window_start
from quotaflow.errors import Unavailable
from quotaflow.storage.base import ReserveOutcome
from quotaflow.storage.counters.pipe import ScriptPipe, bulk
from quotaflow.storage.counters.rebuild import LedgerSource, ledger_window
from quotaflow.storage.outage import Outage, where
from quotaflow.types import Measure

log = logging.getLogger("quotaflow.storage.counters.redis")

WINDOW_GRACE_S = 3600  # a calendar window's keys live this long after it ends
REBUILD_GRACE_S = 0.5  # in-flight ledger journals land before a rebuild reads the ledger
RELOAD_LOCK_S = 60.0  # a reload that takes longer lets another replica start over
RELOAD_WAIT_S = RELOAD_LOCK_S  # a starting replica waits at most this for another's reload
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# How long usage seen in a script's reply may stand in for a snapshot when ranking keys.
# Staleness cannot overshoot (reserve checks atomically in Redis) nor refuse (the picker
# re-checks on a real snapshot first); it only delays, by at most this, when other replicas'
# use reorders this one's ranking. Half a second is far below the shortest calendar window
# (a minute), and a busy replica then takes at most about two real snapshots a second per
# route instead of one per request.
VIEW_TTL_S = 0.5


_RESEND = object()  # RedisCounterStore._run: call again with the keys and args as lists


class CountersUnavailable(Unavailable):
    """The shared counters cannot be read or booked: requests fail closed (503)."""

    code = "counters_unavailable"


def _script(name: str) -> str:
    folder = resources.files("quotaflow.storage.counters") / "lua"
    common = (folder / "common.lua").read_text(encoding="utf-8")
    return common + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


def script_pipe(url: str, timeout_s: float) -> ScriptPipe | None:
    """A pipelined connection for ``redis://`` URLs (TLS and sockets stay on redis-py's)."""
    if not url.startswith("redis://"):
        return None
    spec = parse_url(url)
    return ScriptPipe(
        spec.get("host") or "localhost",
        int(spec.get("port") or 6379),
        db=int(spec.get("db") or 0),
        username=spec.get("username"),
        password=spec.get("password"),
        timeout_s=timeout_s,
    )


class _Script(Protocol):
    @property
    def script(self) -> Any: ...  # its text (redis-py: str, bytes or memoryview)

    async def __call__(self, keys: Sequence[Any] = ..., args: Sequence[Any] = ...) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Bucket:
    key: str
    w: float  # rolling seconds; 0 for calendar and once windows
    ttl: int  # seconds the keys live; 0: forever
    end: float | None  # calendar: when the window resets


@dataclass(frozen=True, slots=True)
class _Window:
    """A limit's current window, kept so the time-zone arithmetic (and the text of what
    the scripts are told about it) is done once per window, not once per call."""

    limit: Limit
    start: float  # -inf: rolling and once windows (they never roll)
    end: float  # inf: rolling and once windows
    bucket: _Bucket  # its ttl is recomputed for calendar windows
    w_text: str  # repr(bucket.w)
    cap_text: str  # repr(limit.amount)
    # The same in RESP, as a reserve sends them: the bucket key, the window's seconds, its
    # keys' ttl when fixed (rolling and once windows; "" for calendar ones), cap and metric.
    key_bulk: str
    w_bulk: str
    ttl_bulk: str
    tail_bulk: str


# What the store last saw of a limit: its window then, the usage, and when (the caller's now).
_Seen = tuple[_Window, LimitUsage, float]


class RedisCounterStore:
    """:class:`~quotaflow.storage.base.CounterStore` in Redis, shared by every replica.

    ``hold_ttl_s``: how long a reservation made without a ttl (a proxied request) holds before
    it is charged at its worst case (its replica died); a live request settles it anyway.
    """

    shared = True

    def __init__(
        self,
        url: str,
        tz: ZoneInfo,
        *,
        prefix: str = "qf:",
        hold_ttl_s: float = 300.0,
        clock: Clock | None = None,
        timeout_s: float = 2.0,
        max_connections: int = 32,
    ) -> None:
        self.url = url
        self.outage = Outage(
            f"the shared counters (Redis at {where(url)})",
            "check that Redis runs and this host reaches it: requests fail closed with 503 "
            "until it is back, then the counters are reloaded from the ledger",
        )
        self._tz = tz
        self.prefix = prefix
        self.hold_ttl_s = hold_ttl_s
        self._clock = clock or SystemClock()
        # A bounded pool: a burst of requests queues for a connection instead of opening one
        # each (and a dead Redis is noticed within ``timeout_s``).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=5,
            decode_responses=True,
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closes the pool with it
        self._epoch_key = f"{prefix}epoch"
        self._tag = os.urandom(6).hex()
        self._ids = itertools.count(1)
        scripts = {
            n: self._redis.register_script(_script(n))
            for n in ("reserve", "settle", "release", "snapshot", "charge", "reset", "load")
        }
        self._scripts: dict[str, _Script] = dict(scripts)
        self._shas = {n: s.sha for n, s in scripts.items()}
        # The scripts of requests (reserve, settle, …) go through one pipelined connection.
        self._pipe = script_pipe(url, timeout_s)
        self._unsent: list[tuple[list[Limit], Measure, float]] = []  # charges to retry
        self._windows: dict[str, _Window] = {}  # per limit id: its current window
        self._view: dict[str, _Seen] = {}  # per limit id: its usage in the last reply
        self._by_key: dict[str, _Window] = {}  # per bucket key: the window it was made for
        # The constant parts of the hot path's commands, in RESP (see reserve and settle).
        self._heads = {n: bulk("EVALSHA") + bulk(sha) for n, sha in self._shas.items()}
        self._epoch_bulk = bulk(self._epoch_key)
        self._rec_prefix = f"{prefix}r:"
        self._rec_len = len(self._rec_prefix.encode())  # a reservation id is ASCII
        self._source: LedgerSource | None = None
        self._down = False
        self._recovery: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # settles retried through redis-py
        self.rebuilds = 0  # how many times this replica reloaded the counters
        self.script_calls = 0  # scripts run for requests (reserve, settle, snapshot, …)
        self.on_alert: Callable[[str, str], None] | None = None  # (subject, message)

    # -- window arithmetic (Python owns time zones, DST and month lengths) ------------------
    def _window(self, lim: Limit, now: float) -> _Window:
        win = self._windows.get(lim.id)
        if (
            win is not None
            and win.start <= now < win.end
            and (win.limit is lim or win.limit == lim)
        ):
            return win  # the common case
        w = lim.window
        inf = math.inf
        if w.kind == "rolling":
            ttl = math.ceil(w.seconds + self.hold_ttl_s) + WINDOW_GRACE_S
            b = _Bucket(f"{self.prefix}b:{lim.id}@roll", w.seconds, ttl, None)
            start, end = -inf, inf
        elif w.kind == "once":
            b = _Bucket(f"{self.prefix}b:{lim.id}@once", 0.0, 0, None)
            start, end = -inf, inf
        else:
            start = window_start(now, w, self._tz)
            reset = next_reset(now, w, self._tz)
            assert reset is not None  # calendar windows end
            end = reset
            b = _Bucket(f"{self.prefix}b:{lim.id}@{start:.0f}", 0.0, 0, end)
        w_text, cap_text = repr(b.w), repr(lim.amount)
        win = _Window(
            lim, start, end, b, w_text, cap_text, bulk(b.key), bulk(w_text),
            "" if b.end is not None else bulk(str(b.ttl)), bulk(cap_text) + bulk(lim.metric),
        )  # fmt: skip
        old = self._windows.get(lim.id)
        if old is not None:  # one key per limit: a minute window makes a new one each minute
            self._by_key.pop(old.bucket.key, None)
        self._windows[lim.id] = win
        self._by_key[b.key] = win
        return win

    @staticmethod
    def _ttl(win: _Window, now: float) -> int:
        """Seconds a window's keys live from now (0: forever)."""
        end = win.bucket.end
        return win.bucket.ttl if end is None else max(math.ceil(end - now), 1) + WINDOW_GRACE_S

    def _bucket(self, lim: Limit, now: float) -> _Bucket:
        win = self._window(lim, now)
        b = win.bucket
        return b if b.end is None else _Bucket(b.key, 0.0, self._ttl(win, now), b.end)

    @staticmethod
    def _usage(lim: Limit, b: _Bucket, used: float, reserved: float, first: float) -> LimitUsage:
        if b.w > 0:
            frees = first + b.w if first >= 0 else None
            return LimitUsage(lim, used, reserved, None, frees)
        return LimitUsage(lim, used, reserved, b.end, b.end)

    # -- the recent view ---------------------------------------------------------------------
    def recent(self, limits: Collection[Limit], now: float) -> dict[str, LimitUsage] | None:
        """The usage of ``limits`` as the last replies showed it, when every one was seen
        less than :data:`VIEW_TTL_S` ago and its window has not rolled since; else ``None``
        (take a :meth:`snapshot`). It may lag other replicas: rank with it, never refuse on
        it. The usages are the view's own: read them, never change them."""
        view = self._view
        out: dict[str, LimitUsage] = {}
        for lim in limits:
            seen = view.get(lim.id)
            if seen is None:
                return None
            win, usage, at = seen
            if not (0.0 <= now - at < VIEW_TTL_S and win.start <= now < win.end):
                return None  # too old, or its window rolled since
            if win.limit is not lim and win.limit != lim:  # edited: same id, new amount
                return None
            out[lim.id] = usage
        return out

    def _keep(self, win: _Window, used: float, reserved: float, first: float, now: float) -> None:
        lim = win.limit
        self._view[lim.id] = (win, self._usage(lim, win.bucket, used, reserved, first), now)

    def _saw(self, key: str, used: float, reserved: float, first: float, now: float) -> None:
        """Keep what a reply showed of bucket ``key``, if it is its limit's current window."""
        win = self._by_key.get(key)
        if win is not None and self._windows.get(win.limit.id) is win:
            self._keep(win, used, reserved, first, now)

    def _forget(self, limits: Collection[Limit]) -> None:
        """Drop the view of limits whose usage changed in a way no reply showed."""
        for lim in limits:
            self._view.pop(lim.id, None)

    def forget(self, limits: Collection[Limit]) -> None:
        """Drop this replica's windows and view of ``limits``. The shared buckets stay in
        Redis (another replica may still settle a request there); no key takes their id again."""
        self._forget(limits)
        for lim in limits:
            win = self._windows.pop(lim.id, None)
            if win is not None:
                self._by_key.pop(win.bucket.key, None)

    # -- calling the scripts ---------------------------------------------------------------
    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self._pipe is None:
            return await self._scripts[name](keys=keys, args=args)
        try:
            if self._pipe.connected:  # the usual case: no coroutine between us and the reply
                return await self._pipe.send("EVALSHA", self._shas[name], len(keys), *keys, *args)
            return await self._pipe.call("EVALSHA", self._shas[name], len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self._scripts[name](keys=keys, args=args)  # loads it into Redis

    async def _run(
        self,
        name: str,
        keys: list[str] | None,
        args: list[Any] | None,
        command: bytes | None = None,
        *,
        in_order: bool = True,
    ) -> Any:
        """Script ``name`` on ``keys`` and ``args``, or (the hot path) ``command``: the same
        call already in RESP, without the lists. Then :data:`_RESEND` means: no pipe, or
        Redis has lost the script; call again with the lists (redis-py loads it).

        It runs after every settle sent before it (``in_order``: all but those settles' own
        second tries, see :meth:`_settled`)."""
        if self._closing and in_order:
            await self._settles_landed()
        try:
            pipe = self._pipe
            if pipe is not None and pipe.connected:  # inlined _call: one frame less to wake
                self.script_calls += 1
                try:
                    if command is not None:
                        return await pipe.send_encoded(command)
                    assert keys is not None and args is not None
                    return await pipe.send("EVALSHA", self._shas[name], len(keys), *keys, *args)
                except ResponseError as exc:
                    if not str(exc).startswith("NOSCRIPT"):
                        raise
                    if keys is None or args is None:
                        return _RESEND
                    return await self._scripts[name](keys=keys, args=args)  # loads it
            if keys is None or args is None:
                return _RESEND
            self.script_calls += 1
            return await self._call(name, keys, args)
        except ResponseError as exc:
            if "QF_NOINIT" in str(exc):
                self._mark_down("Redis has no counters (restarted without data?)")
                raise CountersUnavailable(
                    "The shared counters are being reloaded from the ledger; retry shortly.",
                    headers={"retry-after": "1"},
                ) from None
            raise
        except _DOWN as exc:
            self._mark_down(f"Redis unreachable: {exc}")
            raise CountersUnavailable(
                "The shared counters (Redis) are unreachable; requests fail closed until "
                "they are back.",
                headers={"retry-after": "1"},
            ) from None

    def _mark_down(self, why: str) -> None:
        self._view.clear()  # whatever it held, the counters may come back reloaded
        if self.outage.failed(why) and self.on_alert is not None:
            self.on_alert("counters", f"counters unavailable: {why}")
        self._down = True
        self._start_recovery()

    # -- CounterStore ----------------------------------------------------------------------
    async def reserve(
        self, claims: Sequence[Claim], now: float, ttl_s: float | None = None
    ) -> ReserveOutcome:
        if len(claims) > 1 and len({c.limit.id for c in claims}) < len(claims):
            merged: dict[str, Claim] = {}
            for c in claims:  # one hold per limit: the same limit twice books the sum
                old = merged.get(c.limit.id)
                merged[c.limit.id] = c if old is None else Claim(c.limit, old.amount + c.amount)
            claims = list(merged.values())
        rid = f"{self._tag}-{next(self._ids):x}"
        hold = self.hold_ttl_s if ttl_s is None else ttl_s
        mode = "c" if ttl_s is None else "r"
        rec = f"{self._rec_prefix}{rid}"
        now_t, exp_t, rttl = repr(now), repr(now + hold), str(math.ceil(hold * 2 + 3600))
        n = len(claims)
        # The command in RESP, its constant parts made once per window (see _Window); the
        # per-call parts are ASCII (numbers and the reservation id), so len() counts bytes.
        nk = str(n + 2)
        keys = [
            f"*{10 + 6 * n}\r\n{self._heads['reserve']}${len(nk)}\r\n{nk}\r\n"
            f"{self._epoch_bulk}${self._rec_len + len(rid)}\r\n{rec}\r\n"
        ]
        args = [
            f"${len(now_t)}\r\n{now_t}\r\n${len(exp_t)}\r\n{exp_t}\r\n$1\r\n{mode}\r\n"
            f"${len(rttl)}\r\n{rttl}\r\n${len(rid)}\r\n{rid}\r\n"
        ]
        wins: list[_Window] = []
        window = self._window
        for c in claims:
            win = window(c.limit, now)
            wins.append(win)
            keys.append(win.key_bulk)
            a = repr(c.amount)
            if win.ttl_bulk:
                args += (win.w_bulk, win.ttl_bulk, f"${len(a)}\r\n{a}\r\n", win.tail_bulk)
            else:
                t = str(self._ttl(win, now))
                args += (win.w_bulk, f"${len(t)}\r\n{t}\r\n", f"${len(a)}\r\n{a}\r\n",
                         win.tail_bulk)  # fmt: skip
        out = await self._run("reserve", None, None, "".join(keys + args).encode())
        if out is _RESEND:  # the same call as lists, through redis-py
            keys = [self._epoch_key, rec]
            args = [now_t, exp_t, mode, rttl, rid]
            for c, win in zip(claims, wins, strict=True):
                keys.append(win.bucket.key)
                t = str(self._ttl(win, now))
                args += (win.w_text, t, repr(c.amount), win.cap_text, c.limit.metric)
            out = await self._run("reserve", keys, args)
        ok = int(out[0]) == 1
        keep = self._keep
        # The reply holds each limit's usage before booking: what it is now, once booked.
        for i, (c, win) in enumerate(zip(claims, wins, strict=True)):
            reserved = float(out[2 + 3 * i])
            keep(win, float(out[1 + 3 * i]), reserved + c.amount if ok else reserved,
                 float(out[3 + 3 * i]), now)  # fmt: skip
        if ok:
            return ReserveOutcome(rid)
        usages = {
            c.limit.id: self._usage(
                c.limit,
                w.bucket,
                float(out[1 + 3 * i]),
                float(out[2 + 3 * i]),
                float(out[3 + 3 * i]),
            )
            for i, (c, w) in enumerate(zip(claims, wins, strict=True))
        }
        short = fits(claims, usages)
        if short is None:  # only float noise separates the script's check from ours
            short = fits([Claim(c.limit, c.amount + 1e-6) for c in claims], usages)
        return ReserveOutcome(None, short)

    async def settle(self, reservation_id: str, actual: Measure, now: float) -> None:
        args = [repr(now), repr(actual.tokens), repr(actual.requests), repr(actual.cost)]
        pipe = self._pipe
        if pipe is None or not pipe.connected or self._down:
            await self._close("settle", reservation_id, args, now)
            return
        if self._closing:  # settles tried again through redis-py: this one comes after them
            await self._settles_landed()
        # Sent, not waited for: nothing the request does next needs the reply, and this
        # replica's next commands follow it on the same connection (Redis runs them in
        # order). Until it lands, the hold counts at its worst case: over, never under.
        self.script_calls += 1
        rec = f"{self._rec_prefix}{reservation_id}"
        now_t, tokens, requests, cost = args
        command = (
            f"*9\r\n{self._heads['settle']}$1\r\n2\r\n{self._epoch_bulk}"
            f"${self._rec_len + len(reservation_id)}\r\n{rec}\r\n"
            f"${len(now_t)}\r\n{now_t}\r\n${len(tokens)}\r\n{tokens}\r\n"
            f"${len(requests)}\r\n{requests}\r\n${len(cost)}\r\n{cost}\r\n"
        )
        fut = pipe.send_encoded(command.encode())
        fut.add_done_callback(functools.partial(self._settled, reservation_id, args, now))

    def _settled(self, rid: str, args: list[Any], now: float, fut: asyncio.Future[Any]) -> None:
        """The reply of a settle sent by :meth:`settle` (what :meth:`_close` does after it)."""
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._saw_closed(fut.result(), now)
            return
        if isinstance(exc, ResponseError) and str(exc).startswith("NOSCRIPT"):
            # Through redis-py, which loads the script. The replica's next commands wait for
            # it (see _run): otherwise they would overtake this settle, and a snapshot would
            # show the reservation still held.
            task = asyncio.get_running_loop().create_task(
                self._close("settle", rid, args, now, in_order=False)
            )
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            return
        if isinstance(exc, ResponseError) and "QF_NOINIT" in str(exc):
            self._mark_down("Redis has no counters (restarted without data?)")
        elif isinstance(exc, _DOWN):
            self._mark_down(f"Redis unreachable: {exc}")
        else:
            log.error("settle of reservation %s failed: %s", rid, exc)
        log.warning("could not settle reservation %s: it stays booked", rid)

    async def drain(self) -> None:
        """Wait for the settles sent so far to land (bounded by the timeout)."""
        if self._pipe is not None:
            await self._pipe.drain()
        if self._closing:
            await asyncio.wait(list(self._closing))

    async def release(self, reservation_id: str) -> None:
        now = self._clock.now()
        await self._close("release", reservation_id, [repr(now)], now)

    async def _settles_landed(self) -> None:
        """Wait for the settles being tried again through redis-py (see :meth:`_settled`)."""
        while self._closing:
            await asyncio.wait(list(self._closing))

    async def _close(
        self, op: str, rid: str, args: list[Any], now: float, *, in_order: bool = True
    ) -> None:
        keys = [self._epoch_key, f"{self.prefix}r:{rid}"]
        try:
            out = await self._run(op, keys, args, in_order=in_order)
        except CountersUnavailable:
            # The hold stays and is charged at its worst case when it expires (or the counters
            # are reloaded from the ledger): over-counted, never under-counted.
            log.warning("could not %s reservation %s: it stays booked", op, rid)
            return
        self._saw_closed(out, now)

    def _saw_closed(self, out: list[Any], now: float) -> None:
        saw = self._saw
        for i in range(1, len(out), 4):  # each bucket the reservation held, once closed
            saw(out[i], float(out[i + 1]), float(out[i + 2]), float(out[i + 3]), now)

    async def snapshot(self, limits: Collection[Limit], now: float) -> dict[str, LimitUsage]:
        limits = list({lim.id: lim for lim in limits}.values())
        if not limits:
            return {}
        buckets = [self._bucket(lim, now) for lim in limits]
        out = await self._run(
            "snapshot",
            [self._epoch_key, *(b.key for b in buckets)],
            [repr(now), *(repr(b.w) for b in buckets)],
        )
        usages: dict[str, LimitUsage] = {}
        keep = self._keep
        for i, lim in enumerate(limits):
            used, reserved, first = float(out[3 * i]), float(out[3 * i + 1]), float(out[3 * i + 2])
            usages[lim.id] = self._usage(lim, buckets[i], used, reserved, first)
            win = self._windows.get(lim.id)
            if win is not None and win.bucket.key == buckets[i].key:
                keep(win, used, reserved, first, now)
        return usages

    async def reset(self, limits: Collection[Limit], now: float) -> None:
        self._forget(limits)
        buckets = [self._bucket(lim, now) for lim in limits]
        if buckets:
            await self._run(
                "reset",
                [self._epoch_key, *(b.key for b in buckets)],
                [repr(now), *(repr(b.w) for b in buckets)],
            )

    async def charge(
        self, limits: Collection[Limit], actual: Measure, at: float, now: float
    ) -> None:
        self._forget(limits)
        try:
            await self._charge(list(limits), actual, at, now)
        except CountersUnavailable:
            # The ledger already holds this usage; book it when Redis is back.
            self._unsent.append((list(limits), actual, at))

    async def _charge(self, limits: list[Limit], actual: Measure, at: float, now: float) -> None:
        keys = [self._epoch_key]
        args: list[Any] = [repr(now), repr(at), f"{self._tag}-c{next(self._ids):x}"]
        for lim in limits:
            b = self._bucket(lim, now)
            if b.end is not None:  # calendar: only usage inside the current window counts
                start = window_start(now, lim.window, self._tz)
                if not start <= at < b.end:
                    continue
            keys.append(b.key)
            args += [repr(b.w), b.ttl, repr(actual.of(lim.metric))]
        if len(keys) > 1:
            await self._run("charge", keys, args)

    # -- loading from the ledger -----------------------------------------------------------
    async def is_loaded(self) -> bool:
        """True when Redis holds counters loaded from the ledger (raises when unreachable)."""
        try:
            return bool(await self._redis.exists(self._epoch_key))
        except _DOWN as exc:
            raise CountersUnavailable(f"Redis unreachable: {exc}") from None

    async def attach(self, source: LedgerSource) -> None:
        """Use ``source`` to reload the counters whenever Redis comes back without them; load
        them now if Redis is empty (the first replica to start)."""
        self._source = source
        try:
            await self._load_scripts()
            if not await self.is_loaded() and not await self.rebuild(source):
                await self._await_reload(RELOAD_WAIT_S)
        except (CountersUnavailable, RedisError) as exc:
            self._mark_down(str(exc))

    async def _load_scripts(self) -> None:
        """Give Redis every script now. The hot path calls them by digest and does not wait
        for a settle's reply: a Redis that never saw the settle script (a fresh one, or one
        restarted) would answer NOSCRIPT, and the settle, made again, would land after
        commands sent behind it — a snapshot there shows the reservation still held."""
        for script in self._scripts.values():
            await self._redis.script_load(script.script)

    async def _await_reload(self, wait_s: float) -> None:
        """Wait (bounded) for the replica that holds the reload lock to finish loading the
        counters; past the bound, come up failing closed and let recovery take over."""
        log.warning(
            "another replica is loading the shared counters from the ledger; "
            "waiting up to %gs for it",
            wait_s,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not await self.is_loaded():
            if loop.time() >= deadline:
                self._mark_down(f"the counters were not loaded within {wait_s:g}s")
                return
            await asyncio.sleep(0.1)
        log.warning("shared counters loaded by another replica")

    async def rebuild(self, source: LedgerSource, *, lock_s: float = RELOAD_LOCK_S) -> bool:
        """Reload every limit from the ledger; False if another replica is already at it.

        New reservations fail closed (503) from the moment the epoch is removed until the
        reload is done; pending ledger rows are counted at their reserved worst case, so an
        attempt in flight cannot slip past its limits.
        """
        lock = f"{self.prefix}rebuild-lock"
        token = f"{self._tag}-{next(self._ids)}"
        if not await self._redis.set(lock, token, nx=True, px=int(lock_s * 1000)):
            return False
        try:
            await self._redis.delete(self._epoch_key)
            await asyncio.sleep(REBUILD_GRACE_S)
            await self._wipe()
            now = self._clock.now()
            for lim in source.all():
                await self._load(lim, source.ledger, now)
            await self._redis.set(self._epoch_key, token)
            self._view.clear()
            self.rebuilds += 1
            log.warning("counters reloaded from the ledger (%d limits)", len(source.all()))
        finally:
            if await self._redis.get(lock) == token:
                await self._redis.delete(lock)
        return True

    async def _wipe(self) -> None:
        for pattern in (f"{self.prefix}b:*", f"{self.prefix}r:*"):
            batch: list[str] = []
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await self._redis.unlink(*batch)
                    batch = []
            if batch:
                await self._redis.unlink(*batch)

    async def _load(self, lim: Limit, ledger: Any, now: float, *, if_absent: bool = False) -> None:
        b = self._bucket(lim, now)
        total, events = await ledger_window(ledger, lim, now, self._tz)
        args: list[Any] = [repr(b.w), b.ttl, repr(total.of(lim.metric)), f"{self._tag}-l"]
        args.append("1" if if_absent else "0")
        for at, m in events:
            args += [repr(at), repr(m.of(lim.metric))]
        await self._scripts["load"](keys=[b.key, self._epoch_key], args=args)

    async def adopt(self, limits: Collection[Limit], ledger: Any, now: float) -> None:
        """Load limits this replica starts to enforce (an agent's budgets, a new key) from the
        ledger, unless their window is already live in Redis: the ledger is never added to
        counters twice, whichever replicas adopt the same limit."""
        if self._source is not None:
            self._source.extra.update((lim.id, lim) for lim in limits)
        self._forget(limits)
        try:
            for lim in limits:
                await self._load(lim, ledger, now, if_absent=True)
        except _DOWN as exc:
            self._mark_down(f"Redis unreachable: {exc}")

    # -- recovery --------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return not self._down

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to recover yet
                self._recovery = asyncio.get_running_loop().create_task(
                    self._recover(), name="quotaflow-counters-recovery"
                )

    async def _recover(self, interval_s: float = 0.25) -> None:
        while self._down:
            try:
                if await self._redis.exists(self._epoch_key):
                    await self._load_scripts()  # a Redis restarted from its file has none
                    while self._unsent:
                        limits, m, at = self._unsent[0]
                        await self._charge(limits, m, at, self._clock.now())
                        self._unsent.pop(0)
                    self._down = False
                    self.outage.answered()
                    if self.on_alert is not None:
                        self.on_alert("counters", "counters available again")
                    return
                if self._source is not None:
                    await self.rebuild(self._source)
            except (RedisError, OSError, CountersUnavailable) as exc:
                log.debug("counters still unavailable: %s", exc)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        with contextlib.suppress(Exception):
            await self.drain()  # the last settles land before the connection goes
        if self._pipe is not None:
            self._pipe.close()
        await self._redis.aclose()
