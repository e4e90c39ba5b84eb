"""Everything the management API keeps beside the gateway, assembled in one place.

``Management.build(gateway, home, …)`` loads (or creates) the master key and the admin
token; ``start()`` — after the gateway started — restores the keys, providers and agents
added at runtime and the forced provider, then watches for alerts; ``close()`` stops that.

When the store is shared by several replicas (PostgreSQL, ``store.shared``), the admin token
is the store's — the first replica to start creates it — and a background task polls the
store's ``mgmt_version`` every second: when another replica added or removed keys or agents,
the same restore runs again (it is idempotent), so they reach this replica within ~1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from quotaflow.engine.limits import Limit
from quotaflow.gateway import Gateway
from quotaflow.services.access import (
    candidate_admin_token,
    claim_admin_token,
    ensure_admin_token,
    is_loopback,
)
from quotaflow.services.agents import AgentRegistry
from quotaflow.services.alerts import AlertMonitor
from quotaflow.services.holds import Holds
from quotaflow.services.keys import ManagedKeys, apply_key_states
from quotaflow.services.notify import Notifier
from quotaflow.storage.files import private_folder
from quotaflow.storage.management import ManagementStore
from quotaflow.storage.secrets import SecretBox, load_master_key

FORCED_SETTING = "forced_provider"
ALERT_INTERVAL_S = 1.0
SYNC_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Management:
    gateway: Gateway
    store: ManagementStore
    box: SecretBox
    keys: ManagedKeys
    agents: AgentRegistry
    alerts: AlertMonitor
    admin_hash: str
    bind_host: str = "127.0.0.1"
    trust_local: bool = False
    new_admin_token: str | None = None  # set when created by this start: print it once
    holds: Holds = field(default_factory=Holds)
    notifier: Notifier | None = None  # alert webhooks, when the config names any
    shared: bool = False  # the store is shared by replicas: admin token and sync through it
    _task: asyncio.Task[None] | None = None
    _sync_task: asyncio.Task[None] | None = None
    _version: int = 0

    @classmethod
    def build(
        cls,
        gateway: Gateway,
        home: Path | None,
        *,
        bind_host: str = "127.0.0.1",
        trust_local: bool = False,
    ) -> Management:
        """Refuses ``trust_local`` unless ``bind_host`` is a loopback address."""
        if trust_local and not is_loopback(bind_host):
            raise ValueError(
                f"--trust-local serves without authentication, so it only binds to loopback "
                f"(127.0.0.1, ::1, localhost), not {bind_host!r}"
            )
        store: ManagementStore = gateway.ledger
        if home is not None:
            private_folder(home)  # 0700, before the master key and the admin token land in it
        box = SecretBox(load_master_key(home))
        agents = AgentRegistry(store, gateway.clock)
        agents.load_config(gateway.config.agents)
        shared = store.shared
        if shared:  # a candidate: start() keeps it only if no replica stored one before
            admin_hash, token = candidate_admin_token(home)
        else:
            admin_hash, token = ensure_admin_token(home)

        def agent_limits() -> list[Limit]:
            return [lim for a in agents.all() for lim in a.limits]

        notifier = None
        if gateway.config.notify:
            notifier = Notifier(gateway.ledger, gateway.config.notify, clock=gateway.clock)
        monitor = AlertMonitor(
            gateway, store, agent_limits, on_alert=notifier.publish if notifier else None
        )
        return cls(
            gateway,
            store,
            box,
            ManagedKeys(gateway, store, box),
            agents,
            monitor,
            admin_hash,
            bind_host,
            trust_local,
            token,
            shared=shared,
            notifier=notifier,
        )

    @property
    def agents_need_keys(self) -> bool:
        """``/v1`` refuses anonymous callers beyond loopback or when the config says so."""
        return self.gateway.config.server.require_agent_keys or not is_loopback(self.bind_host)

    async def start(self) -> None:
        gw = self.gateway
        if self.shared:
            await self._claim_admin_token()
            self._version = await self.store.mgmt_version()  # before the restore: none missed
        await self.keys.restore()
        await gw.restore_probe_health()  # the key tester's verdicts, then operators' states
        await apply_key_states(gw)
        await self.agents.restore()
        agent_limits = [lim for a in self.agents.all() for lim in a.limits]
        await gw.rebuild_counters(agent_limits)
        forced = await self.store.get_setting(FORCED_SETTING)
        if forced and forced in gw.config.providers:
            gw.forced_provider = forced
        await self.alerts.load()
        if self.notifier is not None:
            self.notifier.start()
        self._task = asyncio.create_task(self._watch(), name="quotaflow-alerts")
        if self.shared:
            self._sync_task = asyncio.create_task(self._sync(), name="quotaflow-mgmt-sync")

    async def _claim_admin_token(self) -> None:
        """Atomically store this replica's candidate hash unless one is stored; use the
        stored one (a token is then printed by the replica that created it, only)."""
        self.admin_hash, self.new_admin_token = await claim_admin_token(
            self.store, self.admin_hash, self.new_admin_token
        )

    async def sync_once(self) -> bool:
        """Apply other replicas' changes of keys and agents if the store's version moved;
        True if it did. Counters are loaded for limits this replica did not enforce yet."""
        version = await self.store.mgmt_version()
        if version == self._version:
            return False
        known = {lim.id for a in self.agents.all() for lim in a.limits}
        await self.keys.restore()
        changed = await self.agents.restore()
        new = [lim for a in changed for lim in a.limits if lim.id not in known]
        if new:
            await self.gateway.rebuild_counters(new)
        self._version = version
        return True

    async def _sync(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                await self.sync_once()
            except Exception as exc:  # a store outage: retry next tick, never crash
                if not failing:
                    log.warning("cannot sync keys and agents from the shared store: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("keys and agents sync from the shared store resumed")
                failing = False

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(ALERT_INTERVAL_S)
            with contextlib.suppress(Exception):
                await self.alerts.check()

    async def close(self) -> None:
        for task in (self._task, self._sync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sync_task = None
        if self.notifier is not None:
            await self.notifier.close()

    async def set_forced(self, provider: str | None) -> None:
        await self.store.set_setting(FORCED_SETTING, provider)
        self.gateway.forced_provider = provider
