"""Planning a reservation: worst case on every limit, the clamp, and shortfalls."""

from __future__ import annotations

import pytest

from quotaflow.engine.limits import Limit, LimitUsage
from quotaflow.engine.pricing import Price
from quotaflow.engine.reservation import (
    Claim,
    Plan,
    Shortfall,
    completion_headroom,
    fits,
    plan_reservation,
)
from quotaflow.testing import limit

FREE = Price()
# $2 / $8 per million tokens: 1,000 prompt tokens cost $0.002, each completion token $0.000008.
PRICED = Price(input=2.0, output=8.0)


def usage(lim: Limit, used: float = 0.0, reserved: float = 0.0, frees_at: float | None = None):
    return LimitUsage(lim, used, reserved, frees_at, frees_at)


def plan(limits, usages=None, *, prompt=100, max_tokens=None, model_max=4096, price=FREE, **kw):
    return plan_reservation(
        limits,
        {u.limit.id: u for u in (usages or [])},
        prompt_tokens=prompt,
        requested_max_tokens=max_tokens,
        model_max_output=model_max,
        price=price,
        **kw,
    )


def test_explicit_max_tokens_reserves_prompt_plus_max_on_every_metric() -> None:
    tokens = limit("key:a", "tokens", "day", 10_000)
    requests = limit("key:a", "requests", "minute", 5)
    cost = limit("agent:bob", "cost", "month", 1.0)
    p = plan([tokens, requests, cost], prompt=1_000, max_tokens=500, price=PRICED)
    assert isinstance(p, Plan)
    assert p.prompt_tokens == 1_000
    assert p.max_tokens == 500
    assert not p.clamped
    amounts = {c.limit.id: c.amount for c in p.claims}
    assert amounts == {
        tokens.id: 1_500,
        requests.id: 1,
        cost.id: pytest.approx(1_000 * 2e-6 + 500 * 8e-6),
    }


def test_explicit_max_tokens_is_never_clamped_and_overshoot_is_a_shortfall() -> None:
    tokens = limit("key:a", "tokens", "day", 1_000)
    p = plan([tokens], [usage(tokens, used=400, reserved=100, frees_at=99.0)], max_tokens=500)
    assert isinstance(p, Shortfall)
    assert p.limit == tokens
    assert p.taken == 500
    assert p.needed == 600
    assert p.resets_at == 99.0
    assert p.describe() == (
        "key:a/tokens/day: 500 of 1000 tokens taken (100 held by requests in flight), "
        "request needs 600"
    )


def test_exact_fit_is_admitted() -> None:
    tokens = limit("key:a", "tokens", "day", 1_000)
    p = plan([tokens], [usage(tokens, used=400)], max_tokens=500)
    assert isinstance(p, Plan)
    assert p.claims == (Claim(tokens, 600),)


def test_no_max_tokens_without_binding_limits_uses_the_model_maximum() -> None:
    p = plan([limit("key:a", "requests", "day", 10)], max_tokens=None, model_max=8192)
    assert isinstance(p, Plan)
    assert p.max_tokens == 8192
    assert not p.clamped


def test_no_max_tokens_is_clamped_to_the_token_headroom() -> None:
    tokens = limit("key:a", "tokens", "day", 1_000)
    agent = limit("agent:bob", "tokens", "month", 5_000)
    p = plan([tokens, agent], [usage(tokens, used=300, reserved=100), usage(agent, used=4_500)])
    # key: 1000 - 400 - 100 prompt = 500; agent: 5000 - 4500 - 100 = 400 → 400 binds.
    assert isinstance(p, Plan)
    assert p.max_tokens == 400
    assert p.clamped
    assert {c.limit.id: c.amount for c in p.claims} == {tokens.id: 500, agent.id: 500}


def test_clamp_never_exceeds_the_model_maximum() -> None:
    tokens = limit("key:a", "tokens", "day", 1_000_000)
    p = plan([tokens], model_max=2_048)
    assert isinstance(p, Plan)
    assert p.max_tokens == 2_048
    assert not p.clamped


def test_no_max_tokens_is_clamped_to_the_cost_headroom() -> None:
    cost = limit("agent:bob", "cost", "month", 0.01)
    # $0.01 - 1000 prompt tokens × $2/M = $0.008 left → 1000 completion tokens at $8/M.
    p = plan([cost], prompt=1_000, price=PRICED)
    assert isinstance(p, Plan)
    assert p.max_tokens == 1_000
    assert p.clamped
    (claim,) = p.claims
    assert claim.amount == pytest.approx(0.01)
    assert completion_headroom([cost], {}, 1_000, PRICED) == pytest.approx(1_000)


def test_cost_limit_does_not_clamp_free_models() -> None:
    cost = limit("agent:bob", "cost", "month", 0.0001)
    p = plan([cost], prompt=1_000, price=FREE, model_max=512)
    assert isinstance(p, Plan)
    assert p.max_tokens == 512


def test_the_tighter_of_token_and_cost_headroom_binds() -> None:
    tokens = limit("key:a", "tokens", "day", 1_600)  # 600 completion tokens after the prompt
    cost = limit("agent:bob", "cost", "month", 0.01)  # 1000 completion tokens
    p = plan([tokens, cost], prompt=1_000, price=PRICED)
    assert isinstance(p, Plan)
    assert p.max_tokens == 600


def test_clamp_below_min_completion_tokens_is_a_shortfall() -> None:
    tokens = limit("key:a", "tokens", "day", 1_000)
    # 1000 - 880 - 100 = 20 completion tokens of room: fine for min 16, not for min 32.
    ok = plan([tokens], [usage(tokens, used=880)], min_completion_tokens=16)
    assert isinstance(ok, Plan)
    assert ok.max_tokens == 20
    short = plan([tokens], [usage(tokens, used=880)], min_completion_tokens=32)
    assert isinstance(short, Shortfall)
    assert short.limit == tokens
    assert short.needed == 132
    assert "request needs 132" in short.describe()


def test_prompt_alone_overshoots() -> None:
    tokens = limit("key:a", "tokens", "day", 1_000)
    short = plan([tokens], [usage(tokens, used=950)], prompt=100)
    assert isinstance(short, Shortfall)
    assert short.needed == 101  # prompt + the minimum completion of 1


def test_shortfall_names_the_first_limit_that_does_not_fit() -> None:
    tokens = limit("key:a", "tokens", "day", 10_000)
    requests = limit("key:a", "requests", "minute", 3)
    cost = limit("agent:bob", "cost", "month", 0.5)
    short = plan(
        [tokens, requests, cost],
        [usage(requests, used=2, reserved=1, frees_at=60.0), usage(cost, used=0.5)],
        max_tokens=10,
        price=PRICED,
    )
    assert isinstance(short, Shortfall)
    assert short.limit == requests
    assert short.resets_at == 60.0
    assert short.describe() == (
        "key:a/requests/minute: 3 of 3 requests taken (1 held by requests in flight), "
        "request needs 1"
    )


def test_shortfall_describe_formats_fractions() -> None:
    cost = limit("agent:bob", "cost", "month", 0.5)
    short = plan([cost], [usage(cost, used=0.4999)], max_tokens=100, prompt=100, price=PRICED)
    assert isinstance(short, Shortfall)
    assert short.describe() == "agent:bob/cost/month: 0.4999 of 0.5 cost taken, request needs 0.001"


def test_fits_checks_claims_against_fresh_usages() -> None:
    tokens = limit("key:a", "tokens", "day", 1_000)
    claims = [Claim(tokens, 600)]
    assert fits(claims, {}) is None
    assert fits(claims, {tokens.id: usage(tokens, used=400)}) is None
    short = fits(claims, {tokens.id: usage(tokens, used=400, reserved=1)})
    assert isinstance(short, Shortfall)
    assert short.taken == 401


def test_a_shortfall_says_how_much_of_the_limit_requests_in_flight_hold() -> None:
    """A limit full of in-flight reservations is not used up: the refusal says so."""
    tokens = limit("key:k1", "tokens", "day", 3_000)
    short = plan([tokens], [usage(tokens, used=161, reserved=2_800)], max_tokens=100)
    assert isinstance(short, Shortfall)
    assert short.held == 2_800
    assert short.describe() == (
        "key:k1/tokens/day: 2961 of 3000 tokens taken (2800 held by requests in flight), "
        "request needs 200"
    )
    spent = plan([tokens], [usage(tokens, used=2_961)], max_tokens=100)
    assert isinstance(spent, Shortfall) and spent.held == 0
    assert "in flight" not in spent.describe()
