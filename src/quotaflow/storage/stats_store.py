"""Where the per key × model statistics live between runs (and, scaled out, between replicas).

:class:`~quotaflow.storage.ledgers.sqlite.SqliteLedger` implements :class:`StatsStore` in the
``model_stats`` table; a shared store (Redis) implements the same two methods. The gateway
loads the snapshot at start and saves it every ``settings.stats_flush_s`` and at close.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from quotaflow.engine.stats import ModelStats


class StatsStore(Protocol):
    async def load_model_stats(self) -> list[ModelStats]:
        """Every saved key × model record."""
        ...

    async def save_model_stats(self, stats: Sequence[ModelStats], at: float) -> None:
        """Insert or replace these records (by key id and model); durable when it returns."""
        ...
