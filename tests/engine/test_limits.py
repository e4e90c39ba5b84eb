"""Seed 000's states by used share, remaining share and the worst state across limits."""

from __future__ import annotations

import pytest

from quotaflow.engine.limits import LimitUsage, remaining_share, state_of, worst_state
from quotaflow.testing import limit
from quotaflow.types import State


@pytest.mark.parametrize(
    ("share", "state"),
    [
        (0.0, State.OK),
        (0.7999999, State.OK),
        (0.8, State.WARNING),
        (0.8999999, State.WARNING),
        (0.9, State.CRITICAL),
        (0.9999999, State.CRITICAL),
        (1.0, State.DEPLETED),
        (1.5, State.DEPLETED),
    ],
)
def test_state_of_thresholds_are_inclusive_at_the_lower_bound(share: float, state: State) -> None:
    assert state_of(share) is state


def test_state_of_custom_thresholds() -> None:
    assert state_of(0.75, warning=0.75, critical=0.95) is State.WARNING
    assert state_of(0.94, warning=0.75, critical=0.95) is State.WARNING
    assert state_of(0.95, warning=0.75, critical=0.95) is State.CRITICAL
    assert state_of(0.74, warning=0.75, critical=0.95) is State.OK


@pytest.mark.parametrize(
    ("used", "reserved", "state"),
    [
        (799, 0, State.OK),
        (800, 0, State.WARNING),
        (700, 100, State.WARNING),  # in-flight reservations count
        (899, 0, State.WARNING),
        (900, 0, State.CRITICAL),
        (999, 0, State.CRITICAL),
        (1000, 0, State.DEPLETED),
        (990, 10, State.DEPLETED),
        (1200, 0, State.DEPLETED),
    ],
)
def test_usage_state_on_integer_quotas(used: float, reserved: float, state: State) -> None:
    u = LimitUsage(limit("key:a", "tokens", "day", 1000), used, reserved, None)
    assert u.state is state


def test_usage_remaining_and_shares() -> None:
    u = LimitUsage(limit("key:a", "tokens", "day", 1000), 600, 150, 123.0)
    assert u.taken == 750
    assert u.remaining == 250
    assert u.used_share == 0.75
    over = LimitUsage(limit("key:a", "tokens", "day", 1000), 1100, 0, None)
    assert over.remaining == 0.0
    assert over.used_share == 1.1


def test_a_zero_limit_is_depleted() -> None:
    u = LimitUsage(limit("key:a", "requests", "day", 0), 0, 0, None)
    assert u.used_share == 1.0
    assert u.state is State.DEPLETED
    assert remaining_share([u]) == 0.0


def test_remaining_share_is_the_binding_limit() -> None:
    tokens = LimitUsage(limit("key:a", "tokens", "day", 1000), 250, 0, None)  # 75 % left
    requests = LimitUsage(limit("key:a", "requests", "minute", 10), 6, 0, None)  # 40 % left
    assert remaining_share([]) == 1.0
    assert remaining_share([tokens]) == 0.75
    assert remaining_share([tokens, requests]) == pytest.approx(0.4)
    over = LimitUsage(limit("key:a", "cost", "month", 5), 7, 0, None)
    assert remaining_share([tokens, over]) == 0.0


def test_worst_state_picks_the_most_severe() -> None:
    ok = LimitUsage(limit("key:a", "tokens", "day", 100), 10, 0, None)
    warn = LimitUsage(limit("key:a", "requests", "day", 100), 85, 0, None)
    crit = LimitUsage(limit("key:a", "cost", "day", 100), 95, 0, None)
    gone = LimitUsage(limit("key:a", "tokens", "month", 100), 100, 0, None)
    assert worst_state([]) is State.OK
    assert worst_state([ok]) is State.OK
    assert worst_state([ok, warn]) is State.WARNING
    assert worst_state([crit, ok, warn]) is State.CRITICAL
    assert worst_state([ok, gone, crit]) is State.DEPLETED


def test_limit_ids_name_scope_metric_and_window() -> None:
    assert limit("key:k1", "tokens", "daily", 5).id == "key:k1/tokens/day"
    assert limit("agent:bob", "cost", "rolling:5m", 5).id == "agent:bob/cost/rolling 300s"
    assert limit("global", "requests", "once", 5).amount == 5.0
