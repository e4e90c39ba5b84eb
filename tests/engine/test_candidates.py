"""build_candidates: who can take a request now, and why each other key cannot."""

from __future__ import annotations

import pytest

from quotaflow.engine.candidates import (
    IN_FLIGHT_POLL_S,
    Pool,
    RequestFacts,
    build_candidates,
    tier_of,
)
from quotaflow.engine.health import Health, begin_attempt, record_failure, unavailable_reason
from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.pricing import Price
from quotaflow.testing import deployment, key, limit, model, provider
from quotaflow.types import ErrorKind, Metric, RateInfo, State

NOW = 1_773_489_600.0
END_OF_DAY = NOW + 12 * 3600
CHEAP = model("mini", tier="cheap", price=Price(0.15, 0.60))
CAPABLE = model("big", tier="capable", price=Price(2.5, 10.0))
PROVIDERS = {
    "openai": provider("openai", models=[CHEAP, CAPABLE]),
    "anthropic": provider(
        "anthropic",
        models=[CAPABLE],
        limits=[limit("provider:anthropic", "requests", "minute", 100)],
    ),
}


def u(lim: Limit, used: float, reserved: float = 0.0, resets: float | None = END_OF_DAY):
    return LimitUsage(lim, used, reserved, resets, resets)


def facts(**kw) -> RequestFacts:
    base = {"prompt_tokens": 100, "max_tokens": 100}
    base.update(kw)
    return RequestFacts(**base)  # type: ignore[arg-type]


def build(keys, usages=(), health=None, f=None, deps=None, extra=(), **kw):
    deps = deps or [deployment("openai", CHEAP)]
    by_provider: dict[str, list] = {}
    for k in keys:
        by_provider.setdefault(k.provider, []).append(k)
    usage_of = {x.limit.id: x for x in usages}
    pool = Pool(deps, by_provider, PROVIDERS, usage_of, health or {}, NOW, list(extra), **kw)
    return build_candidates(pool, f or facts())


def test_a_healthy_key_with_room_is_a_candidate_with_its_plan_and_state() -> None:
    tokens = limit("key:k1", "tokens", "day", 1_000)
    agent = limit("agent:bob", "tokens", "month", 10_000)
    k = key("k1", "openai", limits=[tokens])
    cands, rejected = build([k], [u(tokens, 650)], extra=[agent])
    assert rejected == []
    (c,) = cands
    assert (c.provider, c.model, c.key.id) == ("openai", "mini", "k1")
    assert c.limits == (tokens, agent)  # the agent's budget is reserved with the key's limits
    assert [(cl.limit.id, cl.amount) for cl in c.plan.claims] == [(tokens.id, 200), (agent.id, 200)]
    assert c.key_usages == (u(tokens, 650),)  # headroom and state are the key's own
    assert c.state is State.OK
    assert c.remaining_share == 0.35
    assert not c.saturated
    assert c.est_cost_usd == (100 * 0.15 + 100 * 0.60) / 1e6


def test_disabled_key_is_rejected_without_a_time() -> None:
    cands, (r,) = build([key("k1", "openai", enabled=False)])
    assert cands == []
    assert (r.provider, r.key_id, r.model) == ("openai", "k1", "mini")
    assert r.reason == "disabled by an operator"
    assert r.available_at is None


def test_cooling_down_key_is_rejected_until_the_cooldown_ends() -> None:
    h = Health()
    record_failure(h, ErrorKind.RATE_LIMITED, "slow down", NOW - 1, retry_after_s=20)
    cands, (r,) = build([key("k1", "openai"), key("k2", "openai")], health={"k1": h})
    assert [c.key.id for c in cands] == ["k2"]
    assert r.key_id == "k1"
    assert r.reason == "cooling down: rate limited by the provider (retry after 20s)"
    assert r.available_at == NOW + 19


def test_auth_disabled_and_depleted_keys_are_rejected() -> None:
    dead, empty = Health(), Health()
    record_failure(dead, ErrorKind.AUTH, "invalid api key", NOW)
    record_failure(empty, ErrorKind.QUOTA_EXHAUSTED, "quota", NOW, depleted_until=NOW + 600)
    _, rejected = build(
        [key("dead", "openai"), key("empty", "openai")], health={"dead": dead, "empty": empty}
    )
    by_key = {r.key_id: r for r in rejected}
    assert by_key["dead"].reason == "invalid: invalid api key"
    assert by_key["dead"].available_at is None
    assert by_key["empty"].reason == "quota exhausted at the provider"
    assert by_key["empty"].available_at == NOW + 600


def test_half_open_circuit_lets_exactly_one_probe_through() -> None:
    h = Health()
    for _ in range(3):
        record_failure(h, ErrorKind.SERVER_ERROR, "boom", NOW - 40)
    assert h.circuit == "open"
    cands, rejected = build([key("k1", "openai")], health={"k1": h})
    assert [c.key.id for c in cands] == ["k1"]  # cooled down: the probe may go
    assert rejected == []
    assert h.circuit == "half_open"
    begin_attempt(h)
    cands, (r,) = build([key("k1", "openai")], health={"k1": h})
    assert cands == []
    assert r.reason == "circuit half-open: a probe request is in flight"


def test_provider_rate_headers_with_nothing_left_reject_the_key_until_their_reset() -> None:
    h = Health()
    h.rate = RateInfo(requests_remaining=0, requests_reset_s=5.0)
    h.rate_seen_at = NOW - 1
    _, (r,) = build([key("k1", "openai")], health={"k1": h})
    assert r.reason == "provider reports no requests left in its window"
    assert r.available_at == NOW + 4
    h.rate_seen_at = NOW - 6
    assert unavailable_reason(h, NOW) is None


def test_shortfall_is_rejected_with_the_time_its_window_resets() -> None:
    tokens = limit("key:k1", "tokens", "day", 1_000)
    _, (r,) = build([key("k1", "openai", limits=[tokens])], [u(tokens, 900)])
    assert r.limit_id == tokens.id
    assert r.reason == "key:k1/tokens/day: 900 of 1000 tokens taken, request needs 200"
    assert r.available_at == END_OF_DAY


def test_shortfall_held_by_in_flight_requests_is_polled_soon() -> None:
    tokens = limit("key:k1", "tokens", "day", 1_000)
    _, (r,) = build([key("k1", "openai", limits=[tokens])], [u(tokens, 500, reserved=400)])
    assert r.available_at == NOW + IN_FLIGHT_POLL_S
    once = limit("key:k2", "tokens", "once", 1_000)
    _, (r2,) = build([key("k2", "openai", limits=[once])], [u(once, 500, 400, resets=None)])
    assert r2.available_at == NOW + IN_FLIGHT_POLL_S
    # Without reservations a once-quota never frees by itself.
    _, (r3,) = build([key("k2", "openai", limits=[once])], [u(once, 900, resets=None)])
    assert r3.available_at is None


def test_shortfall_on_the_agent_budget_rejects_every_key() -> None:
    agent = limit("agent:bob", "cost", "month", 0.0001)
    cands, rejected = build(
        [key("k1", "openai"), key("k2", "openai")], [u(agent, 0.0001)], extra=[agent]
    )
    assert cands == []
    assert {r.limit_id for r in rejected} == {agent.id}


def test_no_max_tokens_is_clamped_per_key() -> None:
    tight = limit("key:k1", "tokens", "day", 1_000)
    k1 = key("k1", "openai", limits=[tight])
    k2 = key("k2", "openai")
    cands, _ = build([k1, k2], [u(tight, 600)], f=facts(max_tokens=None))
    by_key = {c.key.id: c.plan for c in cands}
    assert (by_key["k1"].max_tokens, by_key["k1"].clamped) == (300, True)
    assert (by_key["k2"].max_tokens, by_key["k2"].clamped) == (CHEAP.max_output, False)


def test_saturation_counts_only_rate_windows_of_the_key_and_provider() -> None:
    minute = limit("key:k1", "tokens", "minute", 10_000)
    day = limit("key:k2", "tokens", "day", 10_000)
    k1, k2 = key("k1", "openai", limits=[minute]), key("k2", "openai", limits=[day])
    cands, _ = build([k1, k2], [u(minute, 8_000), u(day, 9_000)])
    by_key = {c.key.id: c for c in cands}
    assert by_key["k1"].saturated  # 80 % of a rate limit
    assert by_key["k1"].state is State.WARNING
    assert not by_key["k2"].saturated  # 90 % of a daily quota is no rate limit
    assert by_key["k2"].state is State.CRITICAL
    cands, _ = build([k1], [u(minute, 7_999)])
    assert not cands[0].saturated
    cands, _ = build([k1], [u(minute, 7_000)], saturation=0.7)
    assert cands[0].saturated


def test_provider_rate_limit_saturates_all_its_keys() -> None:
    prov = PROVIDERS["anthropic"].limits[0]
    deps = [deployment("anthropic", CAPABLE)]
    cands, _ = build([key("a1", "anthropic"), key("a2", "anthropic")], [u(prov, 85)], deps=deps)
    assert [c.saturated for c in cands] == [True, True]
    assert all(c.limits == (prov,) for c in cands)


def test_flags_forced_preferred_and_tier() -> None:
    deps = [deployment("openai", CHEAP), deployment("anthropic", CAPABLE, order=1)]
    keys = [key("o1", "openai"), key("a1", "anthropic")]
    cands, _ = build(
        keys,
        deps=deps,
        f=facts(complexity="complex", preferred_provider="openai", forced_provider="anthropic"),
    )
    flags = {c.provider: c.flags for c in cands}
    assert flags["openai"] == {"forced": False, "preferred": True, "tier_match": False}
    assert flags["anthropic"] == {"forced": True, "preferred": False, "tier_match": True}
    cands, _ = build(keys, deps=deps)
    assert all(c.flags["tier_match"] for c in cands)  # no complexity: every tier matches


def test_tier_of_complexity() -> None:
    assert tier_of("simple") == "cheap"
    assert tier_of("complex") == "capable"
    assert tier_of(None) is None
    assert tier_of("medium") is None


def test_excluded_pairs_and_unknown_providers_are_skipped() -> None:
    deps = [deployment("openai", CHEAP), deployment("openai", CAPABLE), deployment("nope", CHEAP)]
    cands, rejected = build(
        [key("o1", "openai"), key("x", "nope")], deps=deps, exclude=[("o1", "mini")]
    )
    assert [(c.key.id, c.model) for c in cands] == [("o1", "big")]
    assert rejected == []


@pytest.mark.parametrize(
    ("scope", "metric", "amount", "used"),
    [
        ("agent:bot1", "tokens", 300, 290),
        ("agent:bot1", "requests", 10, 10),
        ("agent:bot1", "cost", 0.0001, 0.00005),
        ("agent:bot1@openai", "tokens", 300, 290),
        ("route:chat", "tokens", 300, 290),
        ("global", "cost", 0.0001, 0.00005),
    ],
)
def test_a_key_out_of_quota_at_the_provider_waits_also_for_a_budget_on_every_key(
    scope: str, metric: Metric, amount: float, used: float
) -> None:
    """A budget that binds on every key (an agent's, a route's, the gateway's): a key the
    provider cooled for an hour can serve only once both the hour and the budget's day are
    over."""
    budget = limit(scope, metric, "day", amount)
    empty = Health()
    record_failure(empty, ErrorKind.QUOTA_EXHAUSTED, "quota", NOW, depleted_until=NOW + 3600)
    _, (r,) = build([key("k1", "openai")], [u(budget, used)], {"k1": empty}, extra=[budget])
    assert r.reason == "quota exhausted at the provider"
    assert r.limit_id is None
    assert (r.available_at, r.waits_for) == (END_OF_DAY, budget.id)


def test_an_agent_budget_on_another_provider_does_not_hold_a_key_back() -> None:
    agent = limit("agent:bot1@anthropic", "tokens", "day", 300)
    empty = Health()
    record_failure(empty, ErrorKind.QUOTA_EXHAUSTED, "quota", NOW, depleted_until=NOW + 3600)
    _, (r,) = build([key("k1", "openai")], [u(agent, 290)], {"k1": empty}, extra=[agent])
    assert (r.available_at, r.waits_for) == (NOW + 3600, None)


def test_a_key_out_of_quota_at_the_provider_waits_also_for_the_agent_budget() -> None:
    """The agent's budget binds on every key: a key the provider cooled for an hour can
    serve this agent only once both the hour and the agent's day are over."""
    agent = limit("agent:bot1", "tokens", "day", 300)
    empty = Health()
    record_failure(empty, ErrorKind.QUOTA_EXHAUSTED, "quota", NOW, depleted_until=NOW + 3600)
    _, (r,) = build([key("k1", "openai")], [u(agent, 290)], {"k1": empty}, extra=[agent])
    assert r.reason == "quota exhausted at the provider"
    assert r.limit_id is None
    assert (r.available_at, r.waits_for) == (END_OF_DAY, agent.id)


def test_a_key_out_of_quota_at_the_provider_keeps_its_time_when_the_agent_has_room() -> None:
    agent = limit("agent:bot1", "tokens", "day", 300)
    empty = Health()
    record_failure(empty, ErrorKind.QUOTA_EXHAUSTED, "quota", NOW, depleted_until=NOW + 3600)
    _, (r,) = build([key("k1", "openai")], [u(agent, 10)], {"k1": empty}, extra=[agent])
    assert (r.available_at, r.waits_for) == (NOW + 3600, None)


def test_a_shortfall_on_several_limits_waits_for_the_last_to_free() -> None:
    minute = limit("key:k1", "tokens", "minute", 1_000)
    agent = limit("agent:bot1", "tokens", "day", 300)
    at_minute = NOW + 60
    usages = [u(minute, 950, resets=at_minute), u(agent, 290)]
    _, (r,) = build([key("k1", "openai", limits=[minute])], usages, extra=[agent])
    assert r.limit_id == minute.id  # named by the first limit it does not fit
    assert (r.available_at, r.waits_for) == (END_OF_DAY, agent.id)
    # One of them never frees by itself: neither does the key, for this request.
    once = limit("agent:bot1", "tokens", "once", 300)
    _, (r2,) = build(
        [key("k1", "openai", limits=[minute])],
        [u(minute, 950, resets=at_minute), u(once, 290, resets=None)],
        extra=[once],
    )
    assert (r2.available_at, r2.waits_for) == (None, once.id)


def test_a_cooling_key_without_a_time_stays_without_one_whatever_its_limits() -> None:
    agent = limit("agent:bot1", "tokens", "day", 300)
    dead = Health()
    record_failure(dead, ErrorKind.AUTH, "invalid api key", NOW)
    _, (r,) = build([key("k1", "openai")], [u(agent, 290)], {"k1": dead}, extra=[agent])
    assert (r.available_at, r.waits_for) == (None, None)
