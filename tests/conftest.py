"""Fixtures shared by every test package: small and generic."""

from __future__ import annotations

import pytest

from quotaflow.testing import FrozenClock

# 2026-03-14T12:00:00Z: a Saturday, away from any DST change or month end.
CLOCK_START = 1_773_489_600.0


@pytest.fixture
def clock() -> FrozenClock:
    """A clock that moves only when the test says so."""
    return FrozenClock(CLOCK_START)
