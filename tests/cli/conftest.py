"""Driving the real ``quotaflow`` entry point in a subprocess, against fake providers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from quotaflow.storage.base import LedgerRow
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from tests.e2e.procs import Proc, fake_provider


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class QF:
    """``quotaflow`` run as a user would, on one data folder and config."""

    home: Path
    config: Path

    def __call__(self, *args: str, env: dict[str, str] | None = None, config: bool = True) -> Run:
        full = [sys.executable, "-m", "quotaflow", *args]
        if config and args and args[0] not in ("--help",):
            full += ["--config", str(self.config), "--home", str(self.home)]
        e = {**os.environ, "QUOTAFLOW_HOME": str(self.home), "COLUMNS": "200", **(env or {})}
        e.pop("QUOTAFLOW_URL", None)
        p = subprocess.run(full, capture_output=True, text=True, env=e, timeout=60)
        return Run(p.returncode, p.stdout, p.stderr)

    def inproc(self, *args: str, env: dict[str, str] | None = None, config: bool = True) -> Run:
        """The same command line run in-process (the same click objects, no interpreter start)."""
        from click.testing import CliRunner

        from quotaflow.cli.main import cli

        full = list(args)
        if config:
            full += ["--config", str(self.config), "--home", str(self.home)]
        e = {
            "QUOTAFLOW_HOME": str(self.home),
            "QUOTAFLOW_URL": None,
            "COLUMNS": "200",
            **(env or {}),
        }
        r = CliRunner(env=e).invoke(cli, full, prog_name="quotaflow")
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Run(r.exit_code, r.stdout, r.stderr)

    def write_config(self, data: dict[str, Any]) -> None:
        self.config.write_text(yaml.safe_dump(data))


@pytest.fixture
def qf(tmp_path: Path) -> QF:
    return QF(tmp_path / "data", tmp_path / "quotaflow.yaml")


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[Proc]:
    """One OpenAI-protocol fake provider: keys K1, K2, K3 valid, BAD dead."""
    with fake_provider(
        "openai", "--key", "K1", "--key", "K2", "--key", "K3", "--invalid-key", "BAD"
    ) as p:
        yield p


def write_ledger(home: Path, rows: Sequence[LedgerRow]) -> None:
    """Append final rows to the data folder's ledger (a synthetic history)."""

    async def main() -> None:
        ledger = SqliteLedger(home / "quotaflow.db")
        await ledger.open()
        try:
            await ledger.append(list(rows))
        finally:
            await ledger.close()

    home.mkdir(parents=True, exist_ok=True)
    asyncio.run(main())


def row(ts: float, key_id: str, provider: str, tokens: int, **kw: Any) -> LedgerRow:
    """A settled ledger row of ``tokens`` (prompt ⅓, completion ⅔)."""
    prompt = tokens // 3
    return LedgerRow(
        request_id=f"r{ts}", attempt=1, ts=ts, provider=provider, key_id=key_id,
        model=kw.pop("model", "m1"), prompt_tokens=prompt, completion_tokens=tokens - prompt,
        total_tokens=tokens, requests=1, status=kw.pop("status", "ok"), **kw,
    )  # fmt: skip
