"""Assembling a gateway from a configuration and a data folder, for the server, the library
and the command-line tools."""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from quotaflow.clock import Clock
from quotaflow.config.load import load_config, parse_spec, resolve
from quotaflow.config.model import Config
from quotaflow.gateway import Gateway
from quotaflow.gateway import Gateway as Engine
from quotaflow.gateway.upstream import make_client
from quotaflow.services.keys import apply_key_states
from quotaflow.storage import open_counters, open_health_store, open_ledger
from quotaflow.storage.ledgers.sqlite import SqliteLedger


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
    ``$QUOTAFLOW_CONFIG``, else ``./quotaflow.yaml`` when present, else the environment."""
    env = os.environ if env is None else env
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
