"""What the management API stores beside the ledger: keys and providers added at runtime,
agents, settings and alerts. :class:`~quotaflow.storage.ledgers.sqlite.SqliteLedger` implements
:class:`ManagementStore`; a PostgreSQL ledger implements the same methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from quotaflow.types import Measure

MGMT_VERSION = "mgmt_version"  # settings row bumped by every change of managed keys or agents


@dataclass(frozen=True, slots=True)
class ManagedKeyRow:
    """A key added at runtime. ``secret_enc`` is the encrypted secret, never the secret."""

    id: str
    provider: str
    secret_enc: bytes
    secret_hash: str
    quota_total: float
    created_at: float


@dataclass(frozen=True, slots=True)
class AlertRow:
    ts: float
    kind: str  # limit | key_disabled | provider_failing | all_exhausted
    subject: str  # a limit id, key id, provider or route
    level: str  # "75%" … or "error"
    message: str
    id: int | None = None
    # What the replicas sharing a store agree this crossing is (not stored): its webhook
    # event id is made from it, so the replicas that all saw it send it once.
    episode: str | None = None


class ManagementStore(Protocol):
    shared: bool  # True: several replicas share this store (PostgreSQL)

    async def save_provider(self, name: str, preset: str, at: float) -> None: ...
    async def managed_providers(self) -> list[tuple[str, str]]: ...
    async def save_key(self, key: ManagedKeyRow) -> None: ...
    async def delete_key(self, key_id: str) -> None: ...
    async def managed_keys(self) -> list[ManagedKeyRow]: ...
    async def key_ids_seen(self) -> set[str]:
        """Every key id the store holds a trace of: usage (kept through compaction), open
        attempts, per-key settings, resets, alert levels, model statistics."""
        ...

    async def add_agent(self, name: str, key_hash: str, spec_json: str, at: float) -> bool:
        """Store an agent unless its name is taken (atomic); True when this one was stored."""
        ...

    async def delete_agent(self, name: str) -> None: ...
    async def stored_agents(self) -> list[tuple[str, str, str]]: ...
    async def set_setting(self, name: str, value: str | None) -> None: ...
    async def get_setting(self, name: str) -> str | None: ...
    async def claim_setting(self, name: str, value: str) -> str: ...
    async def mgmt_version(self) -> int: ...
    async def bump_mgmt_version(self) -> None: ...
    async def add_alert(self, alert: AlertRow, level: float | None) -> None: ...
    async def set_alert_level(self, subject: str, level: float) -> None: ...
    async def alert_levels(self) -> dict[str, float]: ...
    async def alert_episode(self, subject: str) -> tuple[float, int]: ...
    async def list_alerts(self, limit: int = 100) -> list[AlertRow]: ...
    async def usage_by(
        self,
        group: Sequence[str],
        since: float,
        until: float | None = None,
        agent: str | None = None,
    ) -> dict[tuple[str, ...], Measure]: ...
    async def estimated_cost_groups(
        self,
        group: Sequence[str],
        since: float,
        until: float | None = None,
        agent: str | None = None,
    ) -> set[tuple[str, ...]]:
        """The groups of :meth:`usage_by` whose cost is partly an estimate."""
        ...

    async def agents_seen(self, since: float) -> list[str]: ...
