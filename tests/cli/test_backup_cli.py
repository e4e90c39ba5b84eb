"""``quotaflow backup PATH``: a consistent copy of a running server's SQLite data."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import openai

from quotaflow.cli.backup import backup_sqlite
from tests.cli.conftest import row, write_ledger
from tests.e2e.procs import ledger_rows
from tests.e2e_helpers import fake_upstream, served


def backup(home: Path, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "quotaflow", "backup", str(target), "--home", str(home)]
    return subprocess.run([*args, *extra], capture_output=True, text=True, timeout=60)


def test_a_backup_of_a_live_server_holds_every_committed_row(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with fake_upstream() as fake:
        config = f"providers:\n  - {{name: openai, base_url: '{fake.url}/v1', keys: [{{secret: sk-backup-0001}}]}}\n"
        with served(config, home) as gw:
            client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            with client:
                for _ in range(5):
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                    )
                # Requests keep arriving while the copy is made.
                stop = threading.Event()

                def load() -> None:
                    while not stop.is_set():
                        client.chat.completions.create(
                            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                        )

                worker = threading.Thread(target=load)
                worker.start()
                try:
                    committed = len(ledger_rows(home, "status = 'ok'"))
                    run = backup(home, tmp_path / "copy.db")
                finally:
                    stop.set()
                    worker.join()
            assert run.returncode == 0, run.stderr
            assert "ledger rows" in run.stdout
            db = sqlite3.connect(tmp_path / "copy.db")
            try:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                copied = db.execute("SELECT count(*) FROM ledger WHERE status = 'ok'").fetchone()
            finally:
                db.close()
            assert copied[0] >= committed >= 5
            # An existing file is kept unless --force.
            again = backup(home, tmp_path / "copy.db")
            assert again.returncode == 2 and "exists" in again.stderr
            assert backup(home, tmp_path / "copy.db", "--force").returncode == 0


def test_no_database_and_a_postgresql_ledger_are_clear(tmp_path: Path) -> None:
    run = backup(tmp_path / "empty", tmp_path / "copy.db")
    assert run.returncode == 2 and "no database at" in run.stderr
    cfg = tmp_path / "pg.yaml"
    cfg.write_text("storage: {ledger: 'postgresql://postgres@127.0.0.1/x'}\n")
    run = backup(tmp_path / "empty", tmp_path / "copy.db", "--config", str(cfg))
    assert run.returncode == 2 and "pg_dump" in run.stderr


def test_the_copy_is_private_to_its_owner_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_ledger(home, [row(1.0, "k1", "openai", 30)])
    old = os.umask(0o022)  # the usual umask, which leaves a new file readable by all
    try:
        rows = backup_sqlite(home / "quotaflow.db", tmp_path / "copy.db")
    finally:
        os.umask(old)
    assert rows == 1
    assert stat.S_IMODE((tmp_path / "copy.db").stat().st_mode) == 0o600
