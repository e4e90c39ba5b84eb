"""From a route, its keys and a snapshot of usage to the candidates that can take a request.

Every rejected (deployment, key) pair keeps its reason, so "why not this key" is always
answerable, and the earliest instant one of them frees up is known for the wait-or-fail
decision when none is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from quotaflow.config.model import Deployment, Key, Provider
from quotaflow.engine.health import Health, available_at, unavailable_reason
from quotaflow.engine.limits import Limit, LimitUsage, remaining_share, worst_state
from quotaflow.engine.reservation import Plan, Shortfall, plan_reservation
from quotaflow.types import State

IN_FLIGHT_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What routing needs to know about one request."""

    prompt_tokens: int
    max_tokens: int | None  # the client's cap; None: clamp to headroom
    complexity: str | None = None  # "simple" | "complex" (seed 001)
    preferred_provider: str | None = None  # seeds 002/003: tried first, falls back
    forced_provider: str | None = None  # seed 000: used while available
    agent: str = "default"
    min_completion_tokens: int = 16


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    key: Key
    limits: tuple[Limit, ...]
    plan: Plan
    key_usages: tuple[LimitUsage, ...]  # the key's and its provider's limits, for headroom
    state: State
    remaining_share: float
    saturated: bool  # at or above the saturation share of a rate limit (seed 001)
    health: Health
    flags: dict[str, bool] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return self.deployment.provider

    @property
    def model(self) -> str:
        return self.deployment.model.name

    @property
    def est_cost_usd(self) -> float:
        return self.deployment.model.price.worst_case_usd(
            self.plan.prompt_tokens, self.plan.max_tokens
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    provider: str
    key_id: str
    model: str
    reason: str
    available_at: float | None  # None: not by itself (disabled, once-quota, …)
    limit_id: str | None = None


def tier_of(complexity: str | None) -> str | None:
    return {"simple": "cheap", "complex": "capable"}.get(complexity or "")


def build_candidates(
    deployments: Sequence[Deployment],
    keys_by_provider: Mapping[str, Sequence[Key]],
    providers: Mapping[str, Provider],
    extra_limits: Sequence[Limit],
    usages: Mapping[str, LimitUsage],
    health_of: Mapping[str, Health],
    facts: RequestFacts,
    now: float,
    *,
    saturation: float = 0.8,
    exclude: Iterable[tuple[str, str]] = (),
) -> tuple[list[Candidate], list[Rejection]]:
    """Every (deployment, key) pair that could take the request now, and every one that can't."""
    out: list[Candidate] = []
    rejected: list[Rejection] = []
    skip = set(exclude)
    want_tier = tier_of(facts.complexity)
    for dep in deployments:
        provider = providers.get(dep.provider)
        if provider is None:
            continue
        model = dep.model
        for key in keys_by_provider.get(dep.provider, ()):
            if (key.id, model.name) in skip:
                continue
            if not key.enabled:
                rejected.append(
                    Rejection(dep.provider, key.id, model.name, "disabled by an operator", None)
                )
                continue
            h = health_of.get(key.id) or Health()
            why = unavailable_reason(h, now)
            if why is not None:
                rejected.append(
                    Rejection(dep.provider, key.id, model.name, why, available_at(h, now))
                )
                continue
            limits = (*key.limits, *provider.limits, *extra_limits)
            plan = plan_reservation(
                limits,
                usages,
                prompt_tokens=facts.prompt_tokens,
                requested_max_tokens=facts.max_tokens,
                model_max_output=model.max_output,
                price=model.price,
                min_completion_tokens=facts.min_completion_tokens,
            )
            if isinstance(plan, Shortfall):
                frees = plan.resets_at
                held = usages.get(plan.limit.id)
                if held is not None and held.reserved > 0:
                    # In-flight requests hold part of it; they settle below their worst case.
                    frees = (
                        now + IN_FLIGHT_POLL_S
                        if frees is None
                        else min(frees, now + IN_FLIGHT_POLL_S)
                    )
                rejected.append(
                    Rejection(
                        dep.provider, key.id, model.name, plan.describe(), frees, plan.limit.id
                    )
                )
                continue
            if facts.max_tokens is None and plan.max_tokens < facts.min_completion_tokens:
                rejected.append(
                    Rejection(
                        dep.provider, key.id, model.name,
                        f"only {plan.max_tokens} completion tokens of headroom left", None,
                    )
                )  # fmt: skip
                continue
            own = tuple(
                usages[lim.id] for lim in (*key.limits, *provider.limits) if lim.id in usages
            )
            sat = any(u.limit.window.is_rate and u.used_share >= saturation for u in own)
            out.append(
                Candidate(
                    dep, key, limits, plan, own, worst_state(own), remaining_share(own), sat, h,
                    {
                        "forced": facts.forced_provider == dep.provider,
                        "preferred": facts.preferred_provider == dep.provider,
                        "tier_match": want_tier is None or dep.tier == want_tier,
                    },
                )
            )  # fmt: skip
    return out, rejected
