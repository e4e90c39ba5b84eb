"""The runtime: storage → gateway → services on one data folder, opened and closed in that
order — :class:`Runtime` for the server, :func:`open_engine` for the library and the
command-line tools, both on explicitly wired stores."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
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
from quotaflow.gateway import Gateway as Engine
from quotaflow.gateway.upstream import make_client
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
from quotaflow.services.notify import Notifier
from quotaflow.services.sync import ReplicaSync
from quotaflow.storage import open_counters, open_health_store, open_ledger
from quotaflow.storage.files import private_folder
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.storage.management import ManagementStore
from quotaflow.storage.secrets import SecretBox, load_master_key


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
async def open_engine(
    config: Config,
    home: Path,
    *,
    clock: Clock | None = None,
    settle: bool = False,
    network: bool = False,
) -> AsyncIterator[Engine]:
    """The engine on a data folder, for tools: counters rebuilt from the ledger, runtime keys
    restored, the key tester's verdicts applied. ``settle`` also settles rows a crash left
    pending — only when no server runs on the folder; ``network`` gives it an HTTP client."""
    http = (
        make_client(
            config.settings.connect_timeout_s,
            proxy=config.settings.proxy,
            kind=config.settings.http_client,
        )
        if network
        else None
    )
    ledger = SqliteLedger(home / "quotaflow.db", synchronous=config.settings.ledger_synchronous)
    engine = Engine(config, ledger=ledger, clock=clock, http=http)
    await engine.ledger.open()
    try:
        if settle:
            engine.crashed_on_start = await engine.ledger.settle_crashed()
        await restore_managed(engine, home)
        await engine.rebuild_counters()
        await engine.restore_model_stats()
        await engine.restore_probe_health()
        await apply_key_states(engine)
        engine.started_at = engine.clock.now()
        yield engine
        await engine.save_model_stats()
    finally:
        if http is not None:
            await http.close()
        await engine.ledger.close()


async def restore_managed(engine: Engine, home: Path | None) -> int:
    """Re-create the keys and providers added at runtime (``/api/add_key``, ``keys add``)."""
    from quotaflow.services.keys import ManagedKeys
    from quotaflow.storage.secrets import SecretBox, load_master_key

    managed = ManagedKeys(engine, engine.ledger, SecretBox(load_master_key(home)))
    _MANAGED[engine] = managed
    return await managed.restore()


_MANAGED: weakref.WeakKeyDictionary[Engine, Any] = weakref.WeakKeyDictionary()


def managed_keys_of(engine: Engine) -> Any:
    """The :class:`~quotaflow.services.keys.ManagedKeys` :func:`open_engine` restored."""
    managed = _MANAGED.get(engine)
    if managed is None:
        raise RuntimeError("this engine was not opened with open_engine()")
    return managed


FORCED_SETTING = "forced_provider"
ALERT_INTERVAL_S = 1.0

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
    _task: asyncio.Task[None] | None = None
    _sync_task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls,
        gateway: Gateway,
        home: Path | None,
        *,
        bind_host: str = "127.0.0.1",
        trust_local: bool = False,
        admin_token: str | None = None,
    ) -> Runtime:
        """Refuses ``trust_local`` unless ``bind_host`` is a loopback address.

        ``admin_token``: the one the operator chose (``QUOTAFLOW_ADMIN_TOKEN``,
        ``--admin-token-file``); it wins over the stored one, in a shared store too."""
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
        if admin_token is not None:
            admin_hash, token = token_hash(admin_token), None
        elif shared:  # a candidate: start() keeps it only if no replica stored one before
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
        keys = ManagedKeys(gateway, store, box)
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
            shared=shared,
            chosen_admin=admin_token is not None,
            notifier=notifier,
            sync=ReplicaSync(store, keys, agents, gateway) if shared else None,
        )

    @property
    def agents_need_keys(self) -> bool:
        """``/v1`` refuses anonymous callers beyond loopback or when the config says so."""
        return self.gateway.config.server.require_agent_keys or not is_loopback(self.bind_host)

    async def start(self, *, gateway: bool = True) -> None:
        """The one start sequence: the gateway (unless the caller started it), then the
        services on it."""
        gw = self.gateway
        if gateway:
            await gw.start()
        if self.shared and self.chosen_admin:
            await self.store.set_setting(ADMIN_SETTING, self.admin_hash)
        elif self.shared:
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
        await self.alerts.load()
        if self.notifier is not None:
            self.notifier.start()
        self._task = asyncio.create_task(self._watch(), name="quotaflow-alerts")
        if self.sync is not None:
            self._sync_task = asyncio.create_task(self.sync.run(), name="quotaflow-mgmt-sync")

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

    async def close(self, *, gateway: bool = True) -> None:
        for task in (self._task, self._sync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sync_task = None
        if self.notifier is not None:
            await self.notifier.close()
        if gateway:
            await self.gateway.close()

    async def set_forced(self, provider: str | None) -> None:
        await self.store.set_setting(FORCED_SETTING, provider)
        self.gateway.forced_provider = provider
