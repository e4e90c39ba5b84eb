"""Replicas pick up each other's runtime keys and agents.

With a store shared by several replicas (PostgreSQL), every change of managed keys, providers
or agents bumps the store's ``mgmt_version``; each replica polls it every second and, when it
moved, runs the same restore again (it is idempotent), so changes reach it within ~1 s.
"""

from __future__ import annotations

import asyncio
import logging

from quotaflow.gateway import Gateway
from quotaflow.services.agents import AgentRegistry
from quotaflow.services.keys import ManagedKeys
from quotaflow.storage.management import ManagementStore

SYNC_INTERVAL_S = 1.0

log = logging.getLogger("quotaflow.services.sync")


class ReplicaSync:
    def __init__(
        self, store: ManagementStore, keys: ManagedKeys, agents: AgentRegistry, gateway: Gateway
    ) -> None:
        self.store = store
        self._keys = keys
        self._agents = agents
        self._gateway = gateway
        self.version = 0

    async def mark(self) -> None:
        """Take the store's version as seen (before a restore: no change is missed)."""
        self.version = await self.store.mgmt_version()

    async def once(self) -> bool:
        """Apply other replicas' changes of keys and agents if the store's version moved;
        True if it did. Counters are loaded for limits this replica did not enforce yet."""
        version = await self.store.mgmt_version()
        if version == self.version:
            return False
        known = {lim.id for a in self._agents.all() for lim in a.limits}
        await self._keys.restore()
        changed = await self._agents.restore()
        new = [lim for a in changed for lim in a.limits if lim.id not in known]
        if new:
            await self._gateway.rebuild_counters(new)
        self.version = version
        return True

    async def run(self) -> None:
        """Poll until cancelled; a store outage is retried next tick, never fatal."""
        failing = False
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                await self.once()
            except Exception as exc:
                if not failing:
                    log.warning("cannot sync keys and agents from the shared store: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("keys and agents sync from the shared store resumed")
                failing = False
