"""One server per data folder, and a data folder that cannot be used is named, not dumped:
a second ``serve`` on a folder in use exits 2 naming the folder and the holder's pid; the
lock dies with its holder (kill -9 leaves nothing stale); a corrupt, truncated or read-only
database gets one line naming the file and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, gateway
from tests.faults.mounts import small_tmpfs

pytestmark = pytest.mark.e2e


def _config(fake: Proc) -> str:
    return f"""
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: [{{metric: tokens, window: day, amount: 4000}}]}}]
"""


def _serve(home: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``serve`` on ``home``, expected to refuse to start."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "quotaflow",
            "serve",
            "--config",
            str(home / "quotaflow.yaml"),
            "--port",
            "0",
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quotaflow", *args], capture_output=True, text=True, timeout=60
    )


def test_a_second_server_on_one_folder_exits_2_naming_the_holder(
    fresh_fake: Proc, home: Path
) -> None:
    with gateway(_config(fresh_fake), home) as first:
        second = _serve(home)
        assert second.returncode == 2, second.stdout + second.stderr
        assert str(home.resolve()) in second.stderr
        assert str(first.popen.pid) in second.stderr
        assert "Traceback" not in second.stderr
        # Commands that only read keep working beside the server.
        status = _cli("status", "--home", str(home), "--config", str(home / "quotaflow.yaml"))
        assert status.returncode == 0, status.stdout + status.stderr
        first.kill9()
    # kill -9 leaves no stale lock: the next server starts at once.
    with gateway(_config(fresh_fake), home) as again:
        assert again.popen.poll() is None


def _assert_named_refusal(home: Path, db: Path) -> None:
    result = _serve(home)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(db) in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_corrupt_database_is_named_in_one_line(fresh_fake: Proc, home: Path) -> None:
    home.mkdir(parents=True, mode=0o700)
    (home / "quotaflow.yaml").write_text(_config(fresh_fake))
    db = home / "quotaflow.db"
    db.write_bytes(b"this is not an SQLite database, just bytes in its place\n" * 100)
    _assert_named_refusal(home, db.resolve())


def test_a_truncated_database_is_named_in_one_line(fresh_fake: Proc, home: Path) -> None:
    with gateway(_config(fresh_fake), home):
        pass  # a real ledger, with its schema
    db = home / "quotaflow.db"
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.truncate(size // 2)
    _assert_named_refusal(home, db.resolve())


def test_a_read_only_database_is_named_in_one_line(fresh_fake: Proc, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt", size="8m") as mount:
        home = mount.path / "home"
        with gateway(_config(fresh_fake), home):
            pass
        mount.remount("ro")
        _assert_named_refusal(home, (home / "quotaflow.db").resolve())
