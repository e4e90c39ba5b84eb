"""The merge rule of shared key health (issue 8): the stricter of local and remote wins;
clearing is a reset, never a merge."""

from __future__ import annotations

import math

from quotaflow.engine import health as hl
from quotaflow.storage.health.base import (
    apply_reset,
    blocking_fields,
    merge,
    stricter_fields,
)
from quotaflow.types import ErrorKind

NOW = 1_000_000.0


def test_the_later_cooldown_and_depletion_win() -> None:
    h = hl.Health(cooldown_until=NOW + 10, cooldown_reason="local", depleted_until=NOW + 50)
    assert not merge(h, {"cooldown_until": repr(NOW + 5), "depleted_until": repr(NOW + 20)}, NOW)
    assert (h.cooldown_until, h.cooldown_reason, h.depleted_until) == (NOW + 10, "local", NOW + 50)
    remote = {"cooldown_until": repr(NOW + 30), "cooldown_reason": "429 on B",
              "depleted_until": "inf"}  # fmt: skip
    assert merge(h, remote, NOW)
    assert (h.cooldown_until, h.cooldown_reason, h.depleted_until) == (
        NOW + 30,
        "429 on B",
        math.inf,
    )


def test_a_disabled_reason_set_anywhere_disables_and_merging_never_clears() -> None:
    h = hl.Health()
    assert merge(h, {"disabled_reason": "auth: revoked"}, NOW)
    assert h.disabled_reason == "auth: revoked"
    assert not merge(h, {"disabled_reason": "", "cooldown_until": ""}, NOW)
    assert h.disabled_reason == "auth: revoked"
    apply_reset(h, "enable")
    assert hl.unavailable_reason(h, NOW) is None


def test_an_open_circuit_is_merged_only_while_its_cooldown_runs() -> None:
    stale = {"circuit": "open", "open_count": "2", "cooldown_until": repr(NOW - 1)}
    h = hl.Health()
    merge(h, stale, NOW)
    assert (h.circuit, h.open_count) == ("closed", 0)
    merge(h, {**stale, "cooldown_until": repr(NOW + 60)}, NOW)
    assert (h.circuit, h.open_count) == ("open", 2)
    assert hl.unavailable_reason(h, NOW) is not None


def test_replenish_clears_only_the_depletion() -> None:
    h = hl.Health(depleted_until=NOW + 100, disabled_reason="x")
    apply_reset(h, "replenish")
    assert (h.depleted_until, h.disabled_reason) == (None, "x")


def test_only_what_is_stricter_than_the_store_is_published() -> None:
    h = hl.Health()
    hl.record_failure(h, ErrorKind.RATE_LIMITED, "slow down", NOW, retry_after_s=30)
    local = blocking_fields(h)
    sent = stricter_fields(local, {})
    assert sent["cooldown_until"] == repr(NOW + 30) and "disabled_reason" not in sent
    assert stricter_fields(local, sent) == {}  # already known: nothing to echo
    assert stricter_fields(local, {"cooldown_until": repr(NOW + 60)}) == {}
