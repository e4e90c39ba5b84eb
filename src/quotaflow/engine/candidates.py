"""From a route, its keys and a snapshot of usage to the candidates that can take a request.

Every rejected (deployment, key) pair keeps its reason, so "why not this key" is always
answerable, and the earliest instant one of them frees up is known for the wait-or-fail
decision when none is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from quotaflow.engine.catalog import Deployment, Key, ModelInfo, Provider
from quotaflow.engine.health import Health, available_at, learned_used_share, unavailable_reason
from quotaflow.engine.limits import Limit, LimitUsage, state_of
from quotaflow.engine.reservation import Plan, Shortfall, plan_reservation
from quotaflow.engine.stats import ModelStats
from quotaflow.types import State

IN_FLIGHT_POLL_S = 0.05
_SETS = (set, frozenset)


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class RequestFacts:
    """What routing needs to know about one request."""

    prompt_tokens: int
    max_tokens: int | None  # the client's cap; None: clamp to headroom
    complexity: str | None = None  # "simple" | "complex" (seed 001)
    preferred_provider: str | None = None  # seeds 002/003: tried first, falls back
    forced_provider: str | None = None  # seed 000: used while available
    agent: str = "default"
    min_completion_tokens: int = 16
    choices: int = 1  # completions asked for (``n``): each may run to max_tokens


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    key: Key
    limits: tuple[Limit, ...]
    plan: Plan | None  # None until planned (the gateway plans lazily, in rank order)
    key_usages: tuple[LimitUsage, ...]  # the key's and its provider's limits, for headroom
    state: State
    remaining_share: float
    saturated: bool  # at or above the saturation share of a rate limit (seed 001)
    health: Health
    flags: dict[str, bool] = field(default_factory=dict)
    est_cost_usd: float = 0.0  # worst case of the request on this deployment
    stats: ModelStats | None = None  # the key × model's statistics (None: never used)
    at: float = 0.0  # when it was screened: strategies read decayed statistics at this time

    @property
    def provider(self) -> str:
        return self.deployment.provider

    @property
    def model(self) -> str:
        return self.deployment.model.name


@dataclass(frozen=True, slots=True)
class Rejection:
    provider: str
    key_id: str
    model: str
    reason: str
    # When this key could serve the request: the latest of its own state's end and each
    # limit the request does not fit freeing. None: not by itself (disabled, once-quota, …)
    available_at: float | None
    limit_id: str | None = None
    # The limit it waits for, when one sets available_at (or never frees by itself).
    waits_for: str | None = None
    # A limit it does not fit is partly held by requests in flight (it frees as they end).
    held: bool = False


_TIER_OF = {"simple": "cheap", "complex": "capable"}


def tier_of(complexity: str | None) -> str | None:
    return _TIER_OF.get(complexity or "")


@dataclass(slots=True)  # a value, not frozen: see quotaflow.types
class Pool:
    """What one routing decision screens: the deployments to try and the keys and providers
    behind them, the extra limits that apply (route, global, agent), a snapshot of usage and
    each key's health, at ``now``; keys above ``saturation`` of a rate limit are marked, and
    the ``(key_id, model)`` pairs in ``exclude`` skipped (already tried)."""

    deployments: Sequence[Deployment]
    keys_by_provider: Mapping[str, Sequence[Key]]
    providers: Mapping[str, Provider]
    usages: Mapping[str, LimitUsage]
    health_of: Mapping[str, Health]
    now: float
    extra_limits: Sequence[Limit] = ()
    saturation: float = 0.8
    exclude: Iterable[tuple[str, str]] = ()
    stats_of: Mapping[tuple[str, str], ModelStats] | None = None


# A usable key's headroom view: (its and its provider's usages, state, remaining share,
# saturated), computed once per key per decision.
_KeyView = tuple[tuple[LimitUsage, ...], State, float, bool]


def screen_candidates(pool: Pool, facts: RequestFacts) -> tuple[list[Candidate], list[Rejection]]:
    """Every (deployment, key) pair whose key is usable now, not yet checked for headroom.

    Each carries its key × model statistics from ``stats_of`` (by ``(key_id, model)``), for
    the learning strategies.

    Cheap enough to run over every key on every request: each key's headroom view is
    computed once, and plans are left to :func:`plan_candidate`, called in rank order.
    """
    providers, keys_by_provider, usages = pool.providers, pool.keys_by_provider, pool.usages
    health_of, now, saturation, stats_of = pool.health_of, pool.now, pool.saturation, pool.stats_of
    exclude = pool.exclude
    out: list[Candidate] = []
    rejected: list[Rejection] = []
    skip = exclude if isinstance(exclude, _SETS) else set(exclude)
    want_tier = tier_of(facts.complexity)
    views: dict[str, _KeyView | Rejection] = {}
    extra = tuple(pool.extra_limits)
    # An agent's budget on one provider binds only there.
    scoped = bool(extra) and any("@" in lim.scope for lim in extra)
    for dep in pool.deployments:
        provider = providers.get(dep.provider)
        if provider is None:
            continue
        keys = keys_by_provider.get(dep.provider)
        if not keys:
            continue
        model = dep.model
        model_name = model.name
        est_cost = model.price.worst_case_usd(
            facts.prompt_tokens, (facts.max_tokens or model.max_output) * facts.choices
        )
        flags = {
            "forced": facts.forced_provider == dep.provider,
            "preferred": facts.preferred_provider == dep.provider,
            "tier_match": want_tier is None or dep.tier == want_tier,
        }
        bound = tuple(binding_on(extra, dep.provider)) if scoped else extra
        for key in keys:
            if skip and (key.id, model_name) in skip:
                continue
            view = views.get(key.id)
            if view is None:
                view = _key_view(key, provider, usages, health_of, now, saturation)
                views[key.id] = view
            limits = key.limits
            if bound or provider.limits:
                limits = (*limits, *provider.limits, *bound)
            if isinstance(view, Rejection):
                rejected.append(_unavailable(view, dep, limits, usages, facts, now))
                continue
            own, state, share, saturated = view
            h = health_of.get(key.id) or Health()
            stats = None if stats_of is None else stats_of.get((key.id, model_name))
            out.append(
                Candidate(
                    dep,
                    key,
                    limits,
                    None,
                    own,
                    state,
                    share,
                    saturated,
                    h,
                    flags,
                    est_cost,
                    stats,
                    now,
                )
            )
    return out, rejected


def _unavailable(
    view: Rejection,
    dep: Deployment,
    limits: tuple[Limit, ...],
    usages: Mapping[str, LimitUsage],
    facts: RequestFacts,
    now: float,
) -> Rejection:
    """A key that cannot take requests now, for one deployment: available when its own state
    ends *and* every limit this request does not fit (an agent's budget, …) has freed."""
    at, waits = view.available_at, None
    if at is not None and limits:
        short = _plan(limits, usages, facts, dep.model)
        if isinstance(short, Shortfall):
            frees, last = _frees_all(short, usages, now)
            if frees is None or frees > at:
                at, waits = frees, last
    return Rejection(dep.provider, view.key_id, dep.model.name, view.reason, at, waits_for=waits)


def _plan(
    limits: Sequence[Limit], usages: Mapping[str, LimitUsage], facts: RequestFacts, model: ModelInfo
) -> Plan | Shortfall:
    return plan_reservation(
        limits,
        usages,
        prompt_tokens=facts.prompt_tokens,
        requested_max_tokens=facts.max_tokens,
        model_max_output=model.max_output,
        price=model.price,
        min_completion_tokens=facts.min_completion_tokens,
        choices=facts.choices,
    )


def _frees_at(s: Shortfall, usages: Mapping[str, LimitUsage], now: float) -> float | None:
    """When the limit of a shortfall frees: its next free-up, or soon while in-flight
    requests hold part of it (they settle below their worst case); None: not by itself."""
    frees = s.resets_at
    held = usages.get(s.limit.id)
    if held is not None and held.reserved > 0:
        frees = now + IN_FLIGHT_POLL_S if frees is None else min(frees, now + IN_FLIGHT_POLL_S)
    return frees


def _frees_all(
    short: Shortfall, usages: Mapping[str, LimitUsage], now: float
) -> tuple[float | None, str]:
    """When every limit the request does not fit has freed (the latest of them; None when
    one never frees by itself), and the id of the limit it waits for (the last to free)."""
    latest: float | None = None
    waits = short.limit.id
    for s in short.every:
        frees = _frees_at(s, usages, now)
        if frees is None:
            return None, s.limit.id
        if latest is None or frees > latest:
            latest, waits = frees, s.limit.id
    return latest, waits


def binding_on(limits: Sequence[Limit], provider: str) -> list[Limit]:
    """The limits that bind on ``provider``: a scope ``agent:<name>@<p>`` (an agent's budget
    on one provider) binds on provider ``p`` only; every other scope binds everywhere."""
    return [lim for lim in limits if lim.scope.partition("@")[2] in ("", provider)]


def _key_view(
    key: Key,
    provider: Provider,
    usages: Mapping[str, LimitUsage],
    health_of: Mapping[str, Health],
    now: float,
    saturation: float,
) -> _KeyView | Rejection:
    if not key.enabled:
        return Rejection(key.provider, key.id, "", "disabled by an operator", None)
    h = health_of.get(key.id)
    # A rate limit the provider announced switches early like a configured one (seed 001).
    learned_hot = False
    if h is not None:
        why = unavailable_reason(h, now)
        if why is not None:
            return Rejection(key.provider, key.id, "", why, available_at(h, now))
        learned_hot = h.rate is not None and learned_used_share(h, now) >= saturation
    own = [usages[lim.id] for lim in key.limits if lim.id in usages]
    if provider.limits:
        own += [usages[lim.id] for lim in provider.limits if lim.id in usages]
    if not own:
        return (), State.OK, 1.0, learned_hot
    # One pass over the key's limits: the worst used share, and whether a rate limit is hot.
    worst = 0.0
    sat = learned_hot
    for u in own:
        lim = u.limit
        amount = lim.amount
        share = (u.used + u.reserved) / amount if amount > 0 else 1.0
        if share > worst:
            worst = share
        if share >= saturation and lim.window.is_rate:
            sat = True
    return tuple(own), state_of(worst), max(1.0 - worst, 0.0), sat


def plan_candidate(
    c: Candidate, usages: Mapping[str, LimitUsage], facts: RequestFacts, now: float
) -> Plan | Rejection:
    """The candidate's reservation plan, or why it has no room for this request (named by
    the first limit it does not fit; available when the last of them frees)."""
    plan = _plan(c.limits, usages, facts, c.deployment.model)
    if isinstance(plan, Shortfall):
        frees, waits = _frees_all(plan, usages, now)
        held = any(s.held > 0 for s in plan.every)
        return Rejection(
            c.provider, c.key.id, c.model, plan.describe(), frees, plan.limit.id, waits, held
        )
    if facts.max_tokens is None and plan.max_tokens < facts.min_completion_tokens:
        return Rejection(
            c.provider,
            c.key.id,
            c.model,
            f"only {plan.max_tokens} completion tokens of headroom left",
            None,
        )
    c.plan = plan
    return plan


def build_candidates(pool: Pool, facts: RequestFacts) -> tuple[list[Candidate], list[Rejection]]:
    """Every (deployment, key) pair that could take the request now (planned), and every
    one that can't, with its reason."""
    screened, rejected = screen_candidates(pool, facts)
    out = []
    for c in screened:
        plan = plan_candidate(c, pool.usages, facts, pool.now)
        if isinstance(plan, Rejection):
            rejected.append(plan)
        else:
            out.append(c)
    return out, rejected
