"""The one booking path: how every use of a key enters the ledger and the counters.

Four ways use arrives — a routed attempt (plain or streamed), a key-tester probe, and usage
an agent reports on ``/api/use`` — and each goes through :meth:`Booking.book`: the ledger row,
the counters (a held reservation settled at the measured use, or the limits charged), the
change counter. Around it the outcome is judged once: the key's health (an auth failure
disables it, an empty quota depletes it), the replicas told, the key × model statistics.

Upstream text is masked here before anything keeps it: a provider may echo a key in an error
("invalid api key sk-…"), so every configured secret, and any run of 8 or more of its
characters, is replaced by the key's masked form in error bodies (before they are classified),
failure messages and ledger details — so neither the ledger, the logs, nor an answer carries it.
A run several keys share (``sk-proj-``) is named after the key the text is about, or none.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from quotaflow.adapters.base import UpstreamFailure
from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key, Route, mask_secret
from quotaflow.engine.limits import Limit
from quotaflow.engine.pricing import COST_ESTIMATED
from quotaflow.engine.stats import Outcome
from quotaflow.engine.windows import next_reset, parse_window
from quotaflow.gateway.keyring import Keyring
from quotaflow.gateway.learning import Learning
from quotaflow.gateway.outcomes import CallContext, StreamEnd
from quotaflow.gateway.picking import Pick
from quotaflow.observability.observer import Observer
from quotaflow.storage.base import CounterStore, LedgerRow, LedgerStore
from quotaflow.types import ErrorKind, Measure, Usage

MASK_RUN = 8  # this many characters of a secret in a row are masked


class SecretMask:
    """Replaces every run of :data:`MASK_RUN`+ characters of a known secret with the secret's
    masked form (``sk-ant-…x9Qf``); a secret shorter than that is masked where it stands as a
    word of its own (so a short test key does not mangle the words it happens to be part of).

    A run is named only by the key whose text it is: a run found in one key alone is masked as
    that key; one several keys share (``sk-proj-``, a common stem) as ``own`` — the key the
    text is about, when the caller knows it and the run is part of it — or else without an
    ending (``sk-proj…``: the first characters every such key's masked form shows anyway), so
    it never points at one of the others."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._grams: dict[str, str] = {}  # each run of a secret → the first key it is in
        shared: dict[str, list[str]] = {}  # a run in several keys → all of them
        short: list[str] = []
        for s in sorted(set(secrets)):
            if len(s) < MASK_RUN:
                short.append(s)
                continue
            for gram in {s[i : i + MASK_RUN] for i in range(len(s) - MASK_RUN + 1)}:
                first = self._grams.setdefault(gram, s)
                if first != s:
                    shared.setdefault(gram, [first]).append(s)
        self._shared = {g: tuple(o) for g, o in shared.items()}
        short.sort(key=len, reverse=True)
        words = "|".join(re.escape(s) for s in short if s)
        self._short = re.compile(rf"(?<![A-Za-z0-9])(?:{words})(?![A-Za-z0-9])") if words else None

    def text(self, text: str, *, own: str | None = None) -> str:
        """``text`` with every secret masked; ``own`` is the secret of the key it is about."""
        if self._short is not None:
            text = self._short.sub(lambda m: mask_secret(m.group()), text)
        grams = self._grams
        if not grams or len(text) < MASK_RUN:
            return text
        out: list[str] = []
        i = start = 0
        n = len(text)
        while i <= n - MASK_RUN:
            gram = text[i : i + MASK_RUN]
            first = grams.get(gram)
            if first is None:
                i += 1
                continue
            end = i + MASK_RUN
            while end < n and text[end - MASK_RUN + 1 : end + 1] in grams:
                end += 1
            out.append(text[start:i])
            out.append(_masked_run(text[i:end], self._shared.get(gram, (first,)), own))
            i = start = end
        if not out:
            return text
        out.append(text[start:])
        return "".join(out)

    def body(self, raw: bytes, *, own: str | None = None) -> bytes:
        if not self._grams and self._short is None:
            return raw
        text = raw.decode("utf-8", "surrogateescape")
        masked = self.text(text, own=own)
        return raw if masked is text else masked.encode("utf-8", "surrogateescape")

    def failure(self, f: UpstreamFailure, *, own: str | None = None) -> UpstreamFailure:
        """Mask the failure's message and client body in place; returns it."""
        f.message = self.text(f.message, own=own)
        if f.body is not None:
            f.body = _mask_json(f.body, lambda t: self.text(t, own=own))
        return f


def _masked_run(run: str, owners: tuple[str, ...], own: str | None) -> str:
    """The masked form of ``run``, whose first :data:`MASK_RUN` characters are in ``owners``:
    the key it is part of if only one is, ``own`` if that is one of them, else no key."""
    holders = [s for s in owners if run in s]
    if len(holders) == 1:
        return mask_secret(holders[0])
    if own is not None and own in holders:
        return mask_secret(own)
    return _unnamed(holders or owners)


def _unnamed(secrets: Sequence[str]) -> str:
    """A mask naming none of ``secrets``: the start their masked forms all show, then ``…``."""
    heads = [mask_secret(s).partition("…")[0] for s in secrets]
    shared = heads[0]
    for head in heads[1:]:
        while not head.startswith(shared):
            shared = shared[:-1]
    return shared + "…"


def _mask_json(value: Any, mask: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _mask_json(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v, mask) for v in value]
    return value


INVALID_SETTING = "key_invalid:"  # + key id → "<secret digest>@<ts>@<reason>"
DEPLETED_SETTING = "key_depleted:"  # + key id → "<secret digest>@<ts>@<until>" ("": not)


def secret_digest(secret: str) -> str:
    """A short digest of a key's secret: tells whether a stored state is about this secret."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class Booking:
    def __init__(
        self,
        config: Config,
        keyring: Keyring,
        learning: Learning,
        ledger: LedgerStore,
        counters: CounterStore,
        clock: Clock,
        new_request_id: Callable[[], str],
        observer: Observer,
    ) -> None:
        self._config = config
        self.observer = observer
        self._settings = config.settings
        self._keyring = keyring
        self._learning = learning
        self.ledger = ledger
        self.counters = counters
        self._clock = clock
        self._new_request_id = new_request_id
        self._mask: SecretMask | None = None
        self._mask_generation = -1

    # -- masking -------------------------------------------------------------------------
    @property
    def mask(self) -> SecretMask:
        """The mask of every key routed to now (rebuilt when the keys change)."""
        if self._mask is None or self._mask_generation != self._keyring.generation:
            self._mask = SecretMask(self._keyring.secrets())
            self._mask_generation = self._keyring.generation
        return self._mask

    # -- the one path --------------------------------------------------------------------
    async def book(
        self,
        row: LedgerRow,
        measure: Measure,
        now: float,
        *,
        reservation_id: str | None = None,
        limits: Sequence[Limit] = (),
    ) -> None:
        """Enter one use: a journaled attempt settles its reservation at the measured use and
        finishes its row; a use booked after the fact (a probe, a report) appends its row and
        charges ``limits``."""
        if row.detail:
            key = self._keyring.keys.get(row.key_id) if row.key_id else None
            own = key.secret if key is not None else None
            row.detail = self.mask.text(row.detail, own=own)[:500]
        if reservation_id is not None:
            await self.counters.settle(reservation_id, measure, now)
            await self.ledger.finish(row)
        else:
            await self.ledger.append([row])
            await self.counters.charge(limits, measure, now, now)
        self._keyring.changes += 1
        self.observer.booked(row, row.request_id)

    def _judge(
        self,
        key: Key,
        model: str,
        now: float,
        *,
        failure: UpstreamFailure | None = None,
        latency_ms: float | None = None,
        ttfb_ms: float | None = None,
        tokens: int = 0,
    ) -> None:
        """The key's health and its key × model statistics after one outcome."""
        h = self._keyring.health_of(key.id)
        if failure is None:
            hl.record_success(h, latency_ms or 0.0, now, ttfb_ms)
            self._learning.observe(key.id, model, now, Outcome(True, latency_ms, ttfb_ms, tokens))
            return
        until = (
            self.depleted_until(key, now, failure)
            if failure.kind is ErrorKind.QUOTA_EXHAUSTED
            else None
        )
        s = self._settings
        was_invalid = hl.is_invalid(h)
        hl.record_failure(
            h,
            failure.kind,
            failure.message,
            now,
            retry_after_s=failure.retry_after_s,
            depleted_until=until,
            cooldown_s=s.cooldown_s,
            failure_threshold=s.failure_threshold,
        )
        self._keyring.notify(key.id)
        if failure.kind is ErrorKind.RATE_LIMITED:
            self.observer.key_cooling(key.provider, key.id, failure.retry_after_s)
        elif hl.is_invalid(h) and not was_invalid:
            reason = (h.disabled_reason or "").removeprefix(hl.INVALID_PREFIX)
            self.observer.key_invalid(key.provider, key.id, reason)
        kind = failure.kind.value
        self._learning.observe(
            key.id,
            model,
            now,
            Outcome(
                False,
                latency_ms,
                tokens=tokens,
                error_kind=kind,
                error=f"{kind}: {failure.message}",
            ),
        )

    # -- routed attempts -----------------------------------------------------------------
    def row(
        self, rid: str, n: int, route: Route, ctx: CallContext, pick: Pick, *, stream: bool
    ) -> LedgerRow:
        c, plan = pick.candidate, pick.plan
        price = c.deployment.model.price
        return LedgerRow(
            request_id=rid,
            attempt=n,
            ts=self._clock.now(),
            agent=ctx.agent,
            route=route.name,
            provider=c.provider,
            key_id=c.key.id,
            model=c.model,
            status="pending",
            stream=stream,
            reserved_tokens=plan.reserved_tokens,
            door=ctx.door,
            extra={
                "reserved_cost": price.worst_case_usd(plan.prompt_tokens, plan.completion_tokens)
            },
        )

    async def journal(self, row: LedgerRow, pick: Pick) -> None:
        """Journal the pending row; if the ledger cannot (it is down), free the reservation."""
        try:
            await self.ledger.begin(row)
        except BaseException:
            await self.counters.release(pick.reservation_id)
            raise

    async def answered(
        self,
        row: LedgerRow,
        pick: Pick,
        usage: Usage,
        latency_ms: float,
        ttfb_ms: float | None = None,
        *,
        status: str = "ok",
        detail: str | None = None,
        error_kind: str | None = None,
    ) -> float:
        """Book an attempt the provider answered (billed as used); returns its cost."""
        price = pick.candidate.deployment.model.price
        cost = price.cost_usd(usage)
        if detail is None and price.estimated:
            detail = f"{COST_ESTIMATED} (settings.unpriced: {self._settings.unpriced})"
        now = self._clock.now()
        row.prompt_tokens = usage.prompt_tokens
        row.completion_tokens = usage.completion_tokens
        row.cached_tokens = usage.cached_tokens
        row.total_tokens = usage.total_tokens
        row.requests = 1
        row.cost_usd = cost
        row.latency_ms = latency_ms
        row.ttfb_ms = ttfb_ms
        row.status = status
        row.estimated = usage.estimated
        row.detail = detail
        row.error_kind = error_kind
        measure = Measure(float(usage.total_tokens), 1.0, cost)
        await self.book(row, measure, now, reservation_id=pick.reservation_id)
        return cost

    async def failed(
        self, row: LedgerRow, pick: Pick, f: UpstreamFailure, t0: float, *, counted: bool = False
    ) -> None:
        """Book an attempt that failed; ``counted`` when the provider saw the request."""
        c = pick.candidate
        self.mask.failure(f, own=c.key.secret)
        now = self._clock.now()
        self._judge(c.key, c.model, now, failure=f)
        row.requests = 1 if counted else 0
        row.latency_ms = (self._clock.monotonic() - t0) * 1000.0
        row.status = "error"
        row.error_kind = f.kind.value
        row.http_status = f.status
        row.detail = f.message
        measure = Measure(0.0, 1.0 if counted else 0.0, 0.0)
        await self.book(row, measure, now, reservation_id=pick.reservation_id)
        if f.kind is ErrorKind.AUTH:
            await self._remember_invalid(c.key, now)
        elif f.kind is ErrorKind.QUOTA_EXHAUSTED:
            await self._remember_depleted(c.key, now)

    async def _remember_invalid(self, key: Key, now: float) -> None:
        """Keep a rejected key's state in the data folder: it stays invalid across restarts
        until an operator enables it or its secret is replaced (see key_states)."""
        store: Any = self.ledger
        if not hasattr(store, "set_setting"):
            return
        reason = self._keyring.health_of(key.id).disabled_reason or ""
        value = f"{secret_digest(key.secret)}@{now}@{reason}"
        await store.set_setting(INVALID_SETTING + key.id, value)

    async def _remember_depleted(self, key: Key, now: float) -> None:
        """Keep a key the provider found empty in the data folder until its window resets:
        after a restart no request is spent finding it out again (see key_states)."""
        until = self._keyring.health_of(key.id).depleted_until
        store: Any = self.ledger
        if until is None or not hasattr(store, "set_setting"):
            return
        value = f"{secret_digest(key.secret)}@{now}@{until!r}"
        await store.set_setting(DEPLETED_SETTING + key.id, value)

    async def forget_depleted(self, key: Key) -> None:
        """The key's quota was reset or topped up: a restart no longer finds it empty."""
        store: Any = self.ledger
        if hasattr(store, "set_setting"):
            await store.set_setting(DEPLETED_SETTING + key.id, "")

    async def succeeded(self, pick: Pick, latency_ms: float, tokens: int) -> None:
        """A plain answer was accepted: the key's health and statistics learn it."""
        c = pick.candidate
        self._judge(c.key, c.model, self._clock.now(), latency_ms=latency_ms, tokens=tokens)

    async def stream_ended(self, row: LedgerRow, pick: Pick, end: StreamEnd) -> float:
        """Bill a stream that ended (completed, cut upstream or abandoned by the client)."""
        c = pick.candidate
        now = self._clock.now()
        failure = end.failure
        if failure is not None:
            self.mask.failure(failure, own=c.key.secret)
            self._judge(c.key, c.model, now, failure=failure)
        elif end.status == "ok":
            self._judge(
                c.key,
                c.model,
                now,
                latency_ms=end.latency_ms,
                ttfb_ms=end.ttfb_ms,
                tokens=end.usage.total_tokens,
            )
        else:
            c.health.probe_in_flight = False
        self._learning.session_totals.book(
            end.status == "ok" and failure is None, end.usage.total_tokens
        )
        return await self.answered(
            row,
            pick,
            end.usage,
            end.latency_ms,
            end.ttfb_ms,
            status=end.status,
            detail=end.detail,
            error_kind=failure.kind.value if failure else None,
        )

    # -- use booked after the fact ---------------------------------------------------------
    async def probed(
        self,
        key: Key,
        model: str,
        latency_ms: float | None,
        failure: UpstreamFailure | None = None,
        usage: Usage | None = None,
    ) -> LedgerRow:
        """Book a key-tester call: the key's health and statistics, and a ``source='probe'``
        row whose tokens count against the key's limits like any other use."""
        now = self._clock.now()
        usage = usage or Usage()
        if failure is not None:
            self.mask.failure(failure, own=key.secret)
        p = self._config.providers[key.provider]
        cost = p.model(model).price.cost_usd(usage) if failure is None else 0.0
        counted = failure is None or failure.status is not None
        self._judge(
            key, model, now, failure=failure, latency_ms=latency_ms, tokens=usage.total_tokens
        )
        row = LedgerRow(
            request_id=self._new_request_id(),
            attempt=1,
            ts=now,
            agent="quotaflow-probe",
            provider=key.provider,
            key_id=key.id,
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            requests=1 if counted else 0,
            cost_usd=cost,
            latency_ms=latency_ms,
            status="ok" if failure is None else "error",
            estimated=usage.estimated,
            error_kind=None if failure is None else failure.kind.value,
            http_status=None if failure is None else failure.status,
            source="probe",
            detail=None if failure is None else failure.message,
        )
        limits = [*key.limits, *p.limits, *self._config.global_limits]
        await self.book(
            row,
            Measure(float(usage.total_tokens), 1.0 if counted else 0.0, cost),
            now,
            limits=limits,
        )
        return row

    async def refused(
        self,
        rid: str,
        attempt: int,
        route: Route,
        ctx: CallContext,
        model: str,
        message: str,
        *,
        stream: bool,
    ) -> None:
        """Book a request no key could take (429): a ``refused`` row with no use, so the
        dashboard, reports and the session summary count it from the ledger alike. A ledger
        that cannot take it does not change the answer: the request is refused anyway."""
        row = LedgerRow(
            request_id=rid,
            attempt=attempt,
            ts=self._clock.now(),
            agent=ctx.agent,
            route=route.name,
            model=model,
            status="refused",
            error_kind="quota_exhausted",
            http_status=429,
            stream=stream,
            door=ctx.door,
            detail=self.mask.text(message)[:500],
        )
        try:
            await self.ledger.append([row])
        except Exception:
            return
        self._keyring.changes += 1

    async def reported(
        self,
        key: Key,
        tokens: int,
        *,
        success: bool,
        reason: str | None,
        agent: str,
        extra_limits: Sequence[Limit] = (),
        held: str | None = None,
    ) -> LedgerRow:
        """Book usage an agent reports (``/api/use``): a ``source='reported'`` row and the
        limits charged; ``held`` is the ``/api/choose`` reservation it replaces, freed."""
        now = self._clock.now()
        p = self._config.providers.get(key.provider)
        price = next(iter(p.models.values())).price if p and p.models else None
        cost = price.worst_case_usd(tokens, 0) if price else 0.0
        row = LedgerRow(
            request_id=self._new_request_id(),
            attempt=1,
            ts=now,
            agent=agent,
            route="api:use",
            provider=key.provider,
            key_id=key.id,
            prompt_tokens=tokens,
            total_tokens=tokens,
            requests=1,
            cost_usd=cost,
            status="reported" if success else "error",
            error_kind=None if success else "reported_failure",
            source="reported",
            detail=(reason or None) and str(reason)[:500],
        )
        limits = [*key.limits, *(p.limits if p else ()), *self._config.global_limits, *extra_limits]
        if held is not None:
            await self.counters.release(held)
        await self.book(row, Measure(float(tokens), 1.0, cost), now, limits=limits)
        return row

    def depleted_until(self, key: Key, now: float, f: UpstreamFailure | None = None) -> float:
        """The provider says the key is empty: until the window the provider named resets
        (Gemini's per-day quota: midnight Pacific), else until the key's longest calendar
        window resets."""
        tz = self._config.tz
        if f is not None and f.quota_window is not None:
            at = next_reset(
                now, parse_window(f.quota_window), ZoneInfo(f.quota_tz) if f.quota_tz else tz
            )
            if at is not None:
                return at
        resets = [
            next_reset(now, lim.window, tz) for lim in key.limits if lim.window.kind != "rolling"
        ]
        known = [r for r in resets if r is not None]
        if known:
            return max(known)
        if any(lim.window.kind == "once" for lim in key.limits):
            return math.inf  # a one-time credit: until an operator resets or tops it up
        return now + 3600.0
