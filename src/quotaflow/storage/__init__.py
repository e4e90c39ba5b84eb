"""Storage backends, chosen by configuration through a lazy ``"module:Class"`` registry.

Only the selected backend's module is imported, so ``redis`` and ``asyncpg`` (the ``scale``
extra) are needed only when ``storage.counters`` / ``storage.ledger`` name them::

    storage:
      counters: memory | redis://127.0.0.1:6379/0
      ledger:   sqlite | postgresql://postgres@127.0.0.1:5432/quotaflow
"""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from typing import Any

from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.errors import ConfigError
from quotaflow.storage.base import CounterStore
from quotaflow.storage.health.base import HealthStore
from quotaflow.storage.ledger import Ledger

COUNTERS = {
    "memory": "quotaflow.storage.counters.memory:MemoryCounterStore",
    "redis": "quotaflow.storage.counters.redis:RedisCounterStore",
}
LEDGERS = {
    "sqlite": "quotaflow.storage.ledgers.sqlite:SqliteLedger",
    "postgresql": "quotaflow.storage.ledgers.postgres:PostgresLedger",
}
_SCHEMES = {"rediss": "redis", "unix": "redis", "postgres": "postgresql"}


def backend_name(setting: str) -> str:
    """``"memory"``, ``"redis://…"`` → ``"redis"``, ``"postgres://…"`` → ``"postgresql"``."""
    scheme = setting.split("://", 1)[0] if "://" in setting else setting
    return _SCHEMES.get(scheme, scheme)


def load_class(path: str) -> Any:
    """Import ``"module:Class"``; a missing optional dependency becomes a clear ConfigError."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ConfigError(
            f"storage backend {path} needs a package that is not installed ({exc.name}): "
            "pip install 'quotaflow[scale]'"
        ) from None


def replica_id(config: Config, home: Path) -> str:
    """This replica's stable name: the setting, ``$QUOTAFLOW_REPLICA_ID``, else host + data folder."""
    return (
        config.storage.replica_id
        or os.environ.get("QUOTAFLOW_REPLICA_ID")
        or f"{socket.gethostname()}:{home.resolve()}"
    )


def open_counters(config: Config, clock: Clock | None = None) -> CounterStore:
    """The counters named by ``storage.counters`` (not connected yet: that happens at start)."""
    spec = config.storage
    name = backend_name(spec.counters)
    cls = load_class(COUNTERS[name])
    if name == "memory":
        return cls(config.tz)  # type: ignore[no-any-return]
    return cls(  # type: ignore[no-any-return]
        spec.counters, config.tz, prefix=spec.key_prefix, hold_ttl_s=spec.hold_ttl_s, clock=clock
    )


def open_health_store(config: Config) -> HealthStore | None:
    """Shared key health when the counters are shared (Redis), else ``None``:
    the embedded mode keeps health in memory and pays nothing."""
    spec = config.storage
    if backend_name(spec.counters) != "redis":
        return None
    cls = load_class("quotaflow.storage.health.redis:RedisHealthStore")
    return cls(spec.counters, prefix=spec.key_prefix)  # type: ignore[no-any-return]


def open_ledger(config: Config, home: Path, clock: Clock | None = None) -> Ledger:
    """The ledger named by ``storage.ledger`` (opened by the gateway at start)."""
    spec = config.storage
    name = backend_name(spec.ledger)
    cls = load_class(LEDGERS[name])
    if name == "sqlite":
        return cls(  # type: ignore[no-any-return]
            home / "quotaflow.db", synchronous=config.settings.ledger_synchronous, clock=clock
        )
    return cls(  # type: ignore[no-any-return]
        spec.ledger,
        replica_id=replica_id(config, home),
        clock=clock,
        stale_after_s=spec.stale_after_s,
    )
