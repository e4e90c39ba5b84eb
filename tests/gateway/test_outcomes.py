"""exhausted_error: the 429 a request gets when no key has headroom says when a request can
first be served and, when a key waits for more than its own state, what it waits for."""

from __future__ import annotations

from quotaflow.engine.candidates import Rejection
from quotaflow.errors import QuotaExhausted
from quotaflow.gateway.outcomes import exhausted_error

NOW = 1_767_225_600.0
DAY = "agent:bot1/tokens/day"


def _error(rejected: list[Rejection]) -> QuotaExhausted:
    frees = [r.available_at for r in rejected if r.available_at is not None]
    err = exhausted_error(rejected, min(frees) if frees else None, NOW)
    assert isinstance(err, QuotaExhausted)
    return err


def test_a_cooling_key_waiting_for_the_agent_budget_is_named_with_it() -> None:
    cooling = Rejection("p", "bravo", "m", "quota exhausted at the provider", NOW + 7200, None, DAY)
    err = _error([cooling])
    assert err.headers["retry-after"] == "7200"
    assert err.details["full_limits"] == [DAY]
    assert err.details["rejected"][0]["waits_for"] == DAY
    assert "unavailable keys: p/bravo: quota exhausted at the provider" in err.message
    assert err.message.endswith(
        f"The first frees in 2h, when agent bot1's budget {DAY} frees (it applies to every key)."
    )


def test_only_the_agent_budget_blocking_is_said_to_be_the_agent_budget() -> None:
    scoped = "agent:bot1@p/cost/month"
    full = [
        Rejection("p", k, "m", f"{scoped}: 1 of 1 cost taken", NOW + 60, scoped, scoped)
        for k in ("alpha", "charlie")
    ]
    err = _error(full)
    assert err.message.startswith(f"This agent's budget is used up (full limits: {scoped}).")
    assert f"agent bot1's budget {scoped} frees (it applies to every p key)." in err.message
    assert err.headers["retry-after"] == "60"


def test_a_key_waiting_for_a_route_limit_names_it_and_a_key_waiting_for_its_own_does_not() -> None:
    route = "route:chat/requests/minute"
    cooling = Rejection("p", "bravo", "m", "cooling down", NOW + 30, None, route)
    assert _error([cooling]).message.endswith(f"The first frees in 30s, when {route} frees.")
    own = "key:alpha/tokens/day"
    full = Rejection("p", "alpha", "m", f"{own}: 10 of 10 tokens taken", NOW + 30, own, own)
    assert _error([full]).message.endswith("). The first frees in 30s.")


def test_a_key_waiting_for_a_budget_that_never_frees_gives_no_retry_after() -> None:
    once = "agent:bot1/tokens/once"
    cooling = Rejection("p", "bravo", "m", "cooling down", None, None, once)
    err = _error([cooling])
    assert "retry-after" not in err.headers
    assert err.details["full_limits"] == [once]
    assert "None frees by itself: a one-time quota was used up" in err.message


def test_limits_full_of_requests_in_flight_are_said_to_be_held_not_used_up() -> None:
    held = Rejection(
        "p", "k1", "m", "key:k1/tokens/day: …", NOW + 1, "key:k1/tokens/day", held=True
    )
    err = _error([held])
    assert "held by requests in flight" in err.message
    assert "set max_tokens" in err.message
    spent = Rejection("p", "k1", "m", "key:k1/tokens/day: …", NOW + 60, "key:k1/tokens/day")
    assert "in flight" not in _error([spent]).message
