"""Candidates → plan → reserve: the best key with headroom for a request, reserved
atomically, or a bounded wait for the first window to free."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.engine import health as hl
from quotaflow.engine.candidates import (
    Candidate,
    Pool,
    Rejection,
    RequestFacts,
    build_candidates,
    plan_candidate,
    screen_candidates,
)
from quotaflow.engine.catalog import Deployment, Route
from quotaflow.engine.limits import LimitUsage
from quotaflow.engine.reservation import Plan
from quotaflow.engine.stats import ModelStats
from quotaflow.engine.strategies import Scored, rank
from quotaflow.gateway.keyring import Keyring
from quotaflow.gateway.outcomes import CallContext, client_gone, exhausted_error
from quotaflow.storage.base import CounterStore

Sleep = Callable[[float], Awaitable[None]]
# While a request waits for headroom, how often it looks whether its client is still there.
CLIENT_CHECK_S = 0.25


@dataclass(slots=True)
class Pick:
    """A ranked candidate whose worst case is reserved on all its limits."""

    scored: Scored
    reservation_id: str

    @property
    def candidate(self) -> Candidate:
        return self.scored.candidate

    @property
    def plan(self) -> Plan:
        plan = self.scored.candidate.plan
        assert plan is not None  # a pick is always planned
        return plan


class NoMore(Exception):
    """After a failed attempt: no other candidate has headroom now (no waiting then)."""

    def __init__(self, rejected: list[Rejection]) -> None:
        super().__init__("no candidate left")
        self.rejected = rejected


class Picker:
    def __init__(
        self,
        config: Config,
        keyring: Keyring,
        counters: CounterStore,
        stats: dict[tuple[str, str], ModelStats],
        clock: Clock,
        rng: random.Random,
        sleep: Sleep,
    ) -> None:
        self._config = config
        self._keyring = keyring
        self.counters = counters
        self._stats = stats
        self._clock = clock
        self.rng = rng
        self._sleep = sleep
        self.on_wait: Callable[[float], None] | None = None  # told each wait for headroom

    async def candidates(
        self,
        route: Route,
        facts: RequestFacts,
        ctx: CallContext,
        exclude: Iterable[tuple[str, str]] = (),
        deployments: Sequence[Deployment] | None = None,
        *,
        planned: bool = True,
    ) -> tuple[list[Scored], list[Rejection], dict[str, LimitUsage]]:
        """Ranked candidates for a request now, the rejected ones with reasons, and the usages.

        With ``planned=False`` the candidates are only screened (key usable) and ranked; their
        headroom is checked by :func:`plan_candidate` in rank order, which is what the hot path
        does so that a decision costs one plan, not one per key.
        """
        ranked, rejected, usages, _ = await self._look(
            route, facts, ctx, exclude, deployments, planned=planned, recent=False
        )
        return ranked, rejected, usages

    async def _look(
        self,
        route: Route,
        facts: RequestFacts,
        ctx: CallContext,
        exclude: Iterable[tuple[str, str]],
        deployments: Sequence[Deployment] | None,
        *,
        planned: bool,
        recent: bool,
    ) -> tuple[list[Scored], list[Rejection], dict[str, LimitUsage], bool]:
        """:meth:`candidates`, and whether its usages came from the counters' recent view
        (with ``recent``, when they keep one: for shared counters, the usage their last
        replies showed)."""
        cfg, kr = self._config, self._keyring
        now = self._clock.now()
        deps = route.deployments if deployments is None else deployments
        extra = (*route.limits, *cfg.global_limits, *ctx.limits)
        limits = kr.route_limits(route)
        if extra:
            limits = [*limits, *extra]
        seen = self.counters.recent(limits, now) if recent else None
        usages = seen if seen is not None else await self.counters.snapshot(limits, now)
        build = build_candidates if planned else screen_candidates
        pool = Pool(deps, kr.by_provider, cfg.providers, usages, kr.health, now)
        pool.extra_limits, pool.exclude, pool.stats_of = extra, exclude, self._stats
        pool.saturation = cfg.settings.rate_saturation
        cands, rejected = build(pool, facts)
        strategy = route.strategy or cfg.settings.strategy
        return (
            rank(strategy, cands, facts, self.rng, cfg.strategy),
            rejected,
            usages,
            seen is not None,
        )

    def has_untried(
        self, deployments: Sequence[Deployment], tried: Collection[tuple[str, str]]
    ) -> bool:
        """Whether a key of these deployments that can take a request now (enabled, not
        cooling down or out of quota at the provider) is still untried for its model."""
        now = self._clock.now()
        health = self._keyring.health
        return any(
            k.enabled
            and (k.id, d.model.name) not in tried
            and (k.id not in health or hl.unavailable_reason(health[k.id], now) is None)
            for d in deployments
            for k in self._keyring.provider_keys(d.provider)
        )

    async def pick(
        self,
        route: Route,
        facts: RequestFacts,
        ctx: CallContext,
        tried: set[tuple[str, str]],
        deployments: Sequence[Deployment],
        deadline: float,
        failed: bool,
    ) -> Pick:
        """Reserve the best candidate; a lost race looks again. With nothing free: wait for
        the first window to free if it does within what is left of ``max_wait_s`` (the whole
        wait of the request, however many times it looks again) and the deadline, else 429
        (or :class:`NoMore` after a failed attempt). A client that goes away while the
        request waits, or before its reservation is used, ends it with
        :class:`~quotaflow.errors.ClientGone`, its reservation released.

        Candidates are ranked on the counters' recent view when they keep one (no round trip
        to shared counters); whatever that view says, the reserve is the atomic check. Every
        decision the view could get wrong against the request looks again at the counters
        themselves: a reserve that lost a race, a plan clamped to the headroom, and nothing
        fitting (before a wait, a 429 or :class:`NoMore`)."""
        recent = True
        wait_until: float | None = None  # when the request's wait for headroom must end
        while True:
            ranked, rejected, usages, viewed = await self._look(
                route, facts, ctx, tried, deployments, planned=False, recent=recent
            )
            now = self._clock.now()
            again = False
            for s in ranked:
                plan = plan_candidate(s.candidate, usages, facts, now)
                if isinstance(plan, Rejection):
                    rejected.append(plan)
                    continue
                if viewed and plan.clamped:
                    again = True  # a stale view may understate the headroom it clamps to
                    break
                out = await self.counters.reserve(plan.claims, now)
                if out.ok:
                    assert out.reservation_id is not None
                    await self._still_there(ctx, out.reservation_id)
                    return Pick(s, out.reservation_id)
                again = True  # lost a race: look again with fresh usage
            if again or viewed:
                recent = False  # never refuse or wait on a view: ask the counters
                continue
            if failed:
                raise NoMore(rejected)
            frees = [r.available_at for r in rejected if r.available_at is not None]
            first = min(frees) if frees else None
            wait = (first - now) if first is not None else None
            mono = self._clock.monotonic()
            if wait_until is None:
                wait_until = mono + self._config.settings.max_wait_s
            if wait is None or wait > wait_until - mono or wait >= deadline - mono:
                raise exhausted_error(rejected, first, now)
            await self._wait(max(wait, 0.0) + 0.001, ctx)
            if self.on_wait is not None:
                self.on_wait(max(wait, 0.0))

    async def _wait(self, seconds: float, ctx: CallContext) -> None:
        """Sleep ``seconds`` for headroom; a caller that can tell whether its client is still
        there (``ctx.connected``) is asked every :data:`CLIENT_CHECK_S`, and a client gone
        ends the wait with :class:`~quotaflow.errors.ClientGone`."""
        if ctx.connected is None:
            await self._sleep(seconds)
            return
        slices = max(math.ceil(seconds / CLIENT_CHECK_S), 1)
        for _ in range(slices):
            if ctx.gone():
                raise client_gone("while it waited for headroom")
            await self._sleep(seconds / slices)
        if ctx.gone():
            raise client_gone("while it waited for headroom")

    async def _still_there(self, ctx: CallContext, reservation_id: str) -> None:
        """Right before the reservation goes upstream: a client gone frees it and ends the
        request with :class:`~quotaflow.errors.ClientGone`."""
        if ctx.gone():
            await self.counters.release(reservation_id)
            raise client_gone("before the request was sent upstream")
