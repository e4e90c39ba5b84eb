"""Everything the management API keeps beside the gateway, assembled in one place.

``Management.build(gateway, home, …)`` loads (or creates) the master key and the admin
token; ``start()`` — after the gateway started — restores the keys, providers and agents
added at runtime and the forced provider, then watches for alerts; ``close()`` stops that.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from quotaflow.agents import AgentRegistry
from quotaflow.alerts import AlertMonitor
from quotaflow.engine.limits import Limit
from quotaflow.gateway import Gateway
from quotaflow.key_states import apply_key_states
from quotaflow.managed_keys import ManagedKeys
from quotaflow.secrets import SecretBox, load_master_key
from quotaflow.storage.management import ManagementStore
from quotaflow.switcher import Holds

FORCED_SETTING = "forced_provider"
ALERT_INTERVAL_S = 1.0


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.x.x`` or ``::1`` (cached: it runs on every request)."""
    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


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
    _task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls, gateway: Gateway, home: Path | None, *, bind_host: str = "127.0.0.1",
        trust_local: bool = False,
    ) -> Management:  # fmt: skip
        """Refuses ``trust_local`` unless ``bind_host`` is a loopback address."""
        from quotaflow.web.auth import ensure_admin_token  # the web layer owns the token format

        if trust_local and not is_loopback(bind_host):
            raise ValueError(
                f"--trust-local serves without authentication, so it only binds to loopback "
                f"(127.0.0.1, ::1, localhost), not {bind_host!r}"
            )
        if not all(hasattr(gateway.ledger, m) for m in ("save_key", "stored_agents")):
            raise TypeError("the management API needs a ledger that stores management state")
        store = cast(ManagementStore, gateway.ledger)
        box = SecretBox(load_master_key(home))
        agents = AgentRegistry(store, gateway.clock)
        agents.load_config(gateway.config.agents)
        admin_hash, token = ensure_admin_token(home)

        def agent_limits() -> list[Limit]:
            return [lim for a in agents.all() for lim in a.limits]

        return cls(
            gateway, store, box, ManagedKeys(gateway, store, box), agents,
            AlertMonitor(gateway, store, agent_limits), admin_hash, bind_host, trust_local, token,
        )  # fmt: skip

    @property
    def agents_need_keys(self) -> bool:
        """``/v1`` refuses anonymous callers beyond loopback or when the config says so."""
        return self.gateway.config.server.require_agent_keys or not is_loopback(self.bind_host)

    async def start(self) -> None:
        gw = self.gateway
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
        self._task = asyncio.create_task(self._watch(), name="quotaflow-alerts")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(ALERT_INTERVAL_S)
            with contextlib.suppress(Exception):
                await self.alerts.check()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def set_forced(self, provider: str | None) -> None:
        await self.store.set_setting(FORCED_SETTING, provider)
        self.gateway.forced_provider = provider
