"""Limits as people read them: money under a cent keeps its digits ($0.0001, not $0.00)."""

from __future__ import annotations

import pytest

from quotaflow.config.describe import amount_text, key_line, limit_alert
from quotaflow.testing import key, limit


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.00"),
        (0.0001, "$0.0001"),
        (0.000075, "$0.000075"),
        (0.0125, "$0.0125"),
        (0.12345, "$0.123"),
        (0.5, "$0.50"),
        (0.9996, "$1.00"),
        (25, "$25.00"),
        (1234.567, "$1,234.57"),
    ],
)
def test_money_has_cents_and_enough_digits_under_a_dollar(amount: float, text: str) -> None:
    assert amount_text("cost", amount) == text


def test_a_cost_limit_under_a_cent_at_start_up_and_in_its_alert() -> None:
    lim = limit("key:k1", "cost", "day", 0.0001)
    assert key_line(key("k1", "openai", limits=[lim])) == (
        "openai key k1: paid plan, $0.0001 a day (config)"
    )
    assert limit_alert(lim, 0.75, 0.000075, {}) == (
        "key k1: 75 % of its daily spend ($0.000075 of $0.0001)"
    )


def test_counts_keep_their_units() -> None:
    assert amount_text("tokens", 200_000) == "200,000 tokens"
    assert amount_text("requests", 1) == "1 request"
