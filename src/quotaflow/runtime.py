"""Assembling a gateway from a configuration and a data folder."""

from __future__ import annotations

import os
from pathlib import Path

from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.gateway import Gateway
from quotaflow.storage import open_counters, open_health_store, open_ledger


def data_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--home``, else ``$QUOTAFLOW_HOME``, else ``./.quotaflow``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("QUOTAFLOW_HOME") or ".quotaflow")


def build_gateway(config: Config, home: Path, *, clock: Clock | None = None) -> Gateway:
    """A gateway on the storage ``config.storage`` names (embedded SQLite + memory by default)."""
    ledger = open_ledger(config, home, clock)
    counters = open_counters(config, clock)
    health_store = open_health_store(config)  # Redis only (issue 8)
    return Gateway(config, ledger=ledger, counters=counters, clock=clock, health_store=health_store)
