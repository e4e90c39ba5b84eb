"""The runtime: storage → gateway → services on one data folder, opened and closed in that
order — :class:`Runtime` for the server, the library and the command-line tools (through
:func:`open_runtime`), on the stores ``config.storage`` names."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quotaflow.clock import Clock
from quotaflow.config.environment import process_environment
from quotaflow.config.load import load_config, parse_spec, resolve
from quotaflow.config.model import Config
from quotaflow.engine.limits import Limit
from quotaflow.gateway import Gateway
from quotaflow.services.access import (
    ADMIN_SETTING,
    candidate_admin_token,
    claim_admin_token,
    ensure_admin_token,
    is_loopback,
    token_hash,
)
from quotaflow.services.agents import AgentRegistry
from quotaflow.services.alerts import AlertMonitor
from quotaflow.services.holds import Holds
from quotaflow.services.keys import ManagedKeys, apply_key_states
from quotaflow.services.notify import Notifier, transport_post
from quotaflow.services.sync import ReplicaSync
from quotaflow.storage import open_counters, open_health_store, open_ledger
from quotaflow.storage.files import private_folder
from quotaflow.storage.management import ManagementStore
from quotaflow.storage.secrets import SecretBox, load_master_key, master_key_origin


def data_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--home``, else ``$QUOTAFLOW_HOME``, else ``./.quotaflow``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("QUOTAFLOW_HOME") or ".quotaflow")


def build_gateway(config: Config, home: Path, *, clock: Clock | None = None) -> Gateway:
    """A gateway on the storage ``config.storage`` names (embedded SQLite + memory by default)."""
    ledger = open_ledger(config, home, clock)
    counters = open_counters(config, clock)
    health_store = open_health_store(config)  # shared by replicas through Redis only
    return Gateway(config, ledger=ledger, counters=counters, clock=clock, health_store=health_store)


ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | Config | None
CONFIG_ENV = "QUOTAFLOW_CONFIG"


def resolve_config(config: ConfigSource = None, env: Mapping[str, str] | None = None) -> Config:
    """A :class:`Config` from a path, a YAML-shaped mapping or a Config; with ``None``:
    ``$QUOTAFLOW_CONFIG``, else ``./quotaflow.yaml`` when present, else the environment.
    ``env`` defaults to the process environment over the working folder's ``.env``."""
    env = process_environment() if env is None else env
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return resolve(parse_spec(dict(config), env), env, source="mapping")
    if config is not None:
        return load_config(Path(os.fspath(config)), env)
    if env.get(CONFIG_ENV):
        return load_config(env[CONFIG_ENV], env)
    if Path("quotaflow.yaml").is_file():
        return load_config("quotaflow.yaml", env)
    return load_config(None, env)


@contextlib.asynccontextmanager
async def open_runtime(
    config: Config,
    home: Path,
    *,
    clock: Clock | None = None,
    settle: bool = False,
) -> AsyncIterator[Runtime]:
    """The runtime on a data folder for the library and the command-line tools: the same
    storage (``config.storage``) and start sequence as ``serve``, without the services that
    belong to a server (admin token, alert watch, webhooks, replica sync). ``settle`` also
    settles rows a crash left pending — only when no server runs on an embedded ledger."""
    runtime = Runtime.build(build_gateway(config, home, clock=clock), home, services=False)
    await runtime.start(settle=settle)
    try:
        yield runtime
    finally:
        await runtime.close()


FORCED_SETTING = "forced_provider"
ALERT_INTERVAL_S = 1.0
# With settings.ledger_retention_days: the first compaction this long after start (not
# while the server gets ready), then one every COMPACT_INTERVAL_S.
COMPACT_FIRST_S = 60.0
COMPACT_INTERVAL_S = 3600.0

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    """A gateway and the services beside it, on one data folder: ``build`` loads (or
    creates) the master key and the admin token; ``start`` starts the gateway, then restores
    the keys, providers and agents added at runtime, the key tester's verdicts, operators'
    key states and the forced provider, then watches for alerts (and, on a shared store,
    for other replicas' changes); ``close`` stops them in reverse."""

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
    chosen_admin: bool = False  # the admin token was chosen by the operator, not stored
    sync: ReplicaSync | None = None  # on a shared store: other replicas' changes
    services: bool = True  # a server's services: admin token, alert watch, webhooks, sync
    _task: asyncio.Task[None] | None = None
    _sync_task: asyncio.Task[None] | None = None
    _compact_task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls,
        gateway: Gateway,
        home: Path | None,
        *,
        bind_host: str = "127.0.0.1",
        trust_local: bool = False,
        admin_token: str | None = None,
        services: bool = True,
    ) -> Runtime:
        """Refuses ``trust_local`` unless ``bind_host`` is a loopback address.

        ``admin_token``: the one the operator chose (``QUOTAFLOW_ADMIN_TOKEN``,
        ``--admin-token-file``); it wins over the stored one, in a shared store too.
        ``services``: a server's (admin token, alert watch, webhooks, replica sync); the
        library and the tools open the runtime without them."""
        if trust_local and not is_loopback(bind_host):
            raise ValueError(
                f"--trust-local serves without authentication, so it only binds to loopback "
                f"(127.0.0.1, ::1, localhost), not {bind_host!r}"
            )
        store: ManagementStore = gateway.ledger
        if services:  # a server: the dashboard reads the last hour from memory
            gateway.ledger.keep_recent()
        if home is not None:
            private_folder(home)  # 0700, before the master key and the admin token land in it
        box = SecretBox(load_master_key(home), master_key_origin(home))
        agents = AgentRegistry(store, gateway.clock)
        agents.load_config(gateway.config.agents)
        shared = store.shared
        if not services:  # nothing is served: no admin token is created or claimed
            admin_hash, token = "", None
        elif admin_token is not None:
            admin_hash, token = token_hash(admin_token), None
        elif shared:  # a candidate: start() keeps it only if no replica stored one before
            admin_hash, token = candidate_admin_token(home)
        else:
            admin_hash, token = ensure_admin_token(home)

        def agent_limits() -> list[Limit]:
            return [lim for a in agents.all() for lim in a.limits]

        notifier = None
        if services and gateway.config.notify:
            post = transport_post(lambda: gateway.http)  # its proxy and timeouts
            notifier = Notifier(
                gateway.ledger, gateway.config.notify, post=post, clock=gateway.clock
            )
        monitor = AlertMonitor(
            gateway, store, agent_limits, on_alert=notifier.publish if notifier else None
        )
        holds = Holds()  # the key service releases a removed key's holds
        keys = ManagedKeys(gateway, store, box, holds)
        return cls(
            gateway,
            store,
            box,
            keys,
            agents,
            monitor,
            admin_hash,
            bind_host,
            trust_local,
            token,
            holds=holds,
            shared=shared,
            chosen_admin=admin_token is not None,
            notifier=notifier,
            sync=ReplicaSync(store, keys, agents, gateway) if shared and services else None,
            services=services,
        )

    @property
    def agents_need_keys(self) -> bool:
        """``/v1`` refuses anonymous callers beyond loopback or when the config says so."""
        return self.gateway.config.server.require_agent_keys or not is_loopback(self.bind_host)

    async def start(self, *, gateway: bool = True, settle: bool = True) -> None:
        """The one start sequence: the gateway (unless the caller started it; ``settle``:
        settling what a crash left pending), then the services on it."""
        if gateway:
            await self.gateway.start(settle=settle)
        try:
            await self._start_services()
        except Exception:  # e.g. stored secrets this master key cannot decrypt
            await self.close(gateway=gateway)  # the refusal leaves nothing open behind it
            raise

    async def _start_services(self) -> None:
        gw = self.gateway
        if self.services and self.shared:  # one admin token for every replica
            if self.chosen_admin:
                await self.store.set_setting(ADMIN_SETTING, self.admin_hash)
            else:
                await self._claim_admin_token()
        if self.sync is not None:
            await self.sync.mark()  # before the restore: no change is missed
        await self.keys.restore()
        await gw.restore_probe_health()  # the key tester's verdicts, then operators' states
        await apply_key_states(gw)
        await self.agents.restore()
        agent_limits = [lim for a in self.agents.all() for lim in a.limits]
        await gw.rebuild_counters(agent_limits)
        forced = await self.store.get_setting(FORCED_SETTING)
        if forced and forced in gw.config.providers:
            gw.forced_provider = forced
        if not self.services:
            return
        await self.alerts.load()
        if self.notifier is not None:
            self.notifier.start()
        self._task = asyncio.create_task(self._watch(), name="quotaflow-alerts")
        if self.sync is not None:
            self._sync_task = asyncio.create_task(self.sync.run(), name="quotaflow-mgmt-sync")
        if gw.config.settings.ledger_retention_days is not None:
            self._compact_task = asyncio.create_task(self._compactions(), name="quotaflow-compact")

    async def _claim_admin_token(self) -> None:
        """Atomically store this replica's candidate hash unless one is stored; use the
        stored one (a token is then printed by the replica that created it, only)."""
        self.admin_hash, self.new_admin_token = await claim_admin_token(
            self.store, self.admin_hash, self.new_admin_token
        )

    async def sync_once(self) -> bool:
        """Apply other replicas' changes now (see :class:`ReplicaSync`)."""
        return await self.sync.once() if self.sync is not None else False

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(ALERT_INTERVAL_S)
            with contextlib.suppress(Exception):
                await self.alerts.check()

    async def compact_once(self) -> int:
        """Fold the ledger rows older than settings.ledger_retention_days (off the event
        loop: a thread of its own under SQLite, a pooled connection under PostgreSQL)."""
        days = self.gateway.config.settings.ledger_retention_days
        if days is None:
            return 0
        from quotaflow.storage.ledgers.sql import retention_cutoff

        return await self.gateway.ledger.compact(retention_cutoff(self.gateway.clock.now(), days))

    async def _compactions(self) -> None:
        await asyncio.sleep(COMPACT_FIRST_S)
        while True:
            try:
                if n := await self.compact_once():
                    log.info("compacted %d ledger row(s) past the retention", n)
            except Exception as exc:  # the next round tries again
                log.warning("ledger compaction failed: %s", exc)
            await asyncio.sleep(COMPACT_INTERVAL_S)

    async def close(self, *, gateway: bool = True) -> None:
        for task in (self._task, self._sync_task, self._compact_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sync_task = self._compact_task = None
        if self.notifier is not None:
            await self.notifier.close()
        if gateway:
            await self.gateway.close()

    async def set_forced(self, provider: str | None) -> None:
        await self.store.set_setting(FORCED_SETTING, provider)
        self.gateway.forced_provider = provider
