"""The whole ledger a runtime opens, as one protocol: what it journals
(:class:`~quotaflow.storage.base.LedgerStore`), the management state kept beside it
(:class:`~quotaflow.storage.management.ManagementStore`), the key × model statistics
(:class:`~quotaflow.storage.stats_store.StatsStore`) and the alert outbox. Both SQL ledgers
are one; the runtime hands it to each part as the narrow protocol that part uses, so nothing
probes for methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from quotaflow.storage.base import LedgerStore
from quotaflow.storage.management import ManagementStore
from quotaflow.storage.outbox import OutboxStore
from quotaflow.storage.stats_store import StatsStore
from quotaflow.types import Measure


class Ledger(LedgerStore, ManagementStore, StatsStore, OutboxStore, Protocol):
    on_commit: Callable[[float], None] | None  # told each group commit's seconds (metrics)

    async def pending_scope(self, scope: str, since: float) -> list[tuple[float, Measure]]:
        """Attempts of a limit scope still in flight on any replica, at their worst case."""
        ...

    async def compact(self, before: float) -> int:
        """Fold settled rows older than ``before`` (down to a UTC day) into the rollups and
        delete them, totals unchanged; returns how many rows went."""
        ...

    def keep_recent(self) -> None:
        """This process serves the dashboard: the embedded ledger keeps the last hour per
        minute in memory from its next open (a shared ledger, written by several replicas,
        reads SQL)."""
        ...

    async def ping(self) -> None:
        """A trivial read: raises :class:`~quotaflow.errors.Unavailable` when unreachable."""
        ...

    @property
    def queue_depth(self) -> int:
        """Writes waiting for the next group commit."""
        ...
