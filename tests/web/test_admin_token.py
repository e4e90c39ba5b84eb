"""The admin token can be chosen and rotated, and never appears in the server's log.

Through real processes: the first start leaves a created token in ``<data>/admin_token``
(0600); ``QUOTAFLOW_ADMIN_TOKEN`` or ``--admin-token-file`` choose one; ``quotaflow
admin-token rotate`` replaces it, printing the new one once; the dashboard's sign-in says
where to find one.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.procs import PY
from tests.e2e_helpers import Served, served

pytestmark = pytest.mark.e2e

CONFIG = "providers: []\n"
CHOSEN = "qfadm-chosen-by-the-operator-0001"


def works(s: Served, token: str) -> bool:
    return s.call("POST", "/api/clear_forced", token=token)[0] == 200


def test_the_first_start_leaves_the_token_in_a_private_file_not_the_log(tmp_path: Path) -> None:
    with served(CONFIG, tmp_path / "home") as s:
        left = s.home / "admin_token"
        assert stat.S_IMODE(left.stat().st_mode) == 0o600
        token = left.read_text().strip()
        assert token.startswith("qfadm-") and works(s, token)
        assert "qfadm-" not in s.proc.output and str(left) in s.proc.output


def test_the_operator_chooses_the_token(tmp_path: Path) -> None:
    with served(CONFIG, tmp_path / "env", env={"QUOTAFLOW_ADMIN_TOKEN": CHOSEN}) as s:
        assert works(s, CHOSEN) and not (s.home / "admin_token").exists()
        assert CHOSEN not in s.proc.output
    token_file = tmp_path / "token.txt"
    token_file.write_text(CHOSEN + "\n")
    with served(CONFIG, tmp_path / "file", "--admin-token-file", str(token_file)) as s:
        assert works(s, CHOSEN) and not works(s, "qfadm-something-else-entirely-1")
    run = subprocess.run(
        [PY, "-m", "quotaflow", "serve", "--port", "0", "--home", str(tmp_path / "bad")],
        env={**_env(), "QUOTAFLOW_ADMIN_TOKEN": "short"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and "QUOTAFLOW_ADMIN_TOKEN" in run.stderr and "short" not in run.stderr  # fmt: skip


def test_rotate_replaces_the_token_and_prints_the_new_one_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with served(CONFIG, home) as s:
        old = s.admin_token
        assert old is not None and works(s, old)
    run = subprocess.run(
        [PY, "-m", "quotaflow", "admin-token", "rotate", "--home", str(home)],
        env=_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    new = run.stdout.strip()
    assert new.startswith("qfadm-") and new != old and new not in run.stderr
    assert not (home / "admin_token").exists()  # the old one's file is void: removed
    with served(CONFIG, home) as s:
        assert works(s, new) and not works(s, old)
        assert new not in s.proc.output


def test_the_sign_in_says_how_to_get_a_token(tmp_path: Path) -> None:
    with served(CONFIG, tmp_path / "home") as s:
        page = s.call("GET", "/")[1] + s.call("GET", "/static/app.js")[1]
        assert "admin_token" in page and "quotaflow admin-token rotate" in page


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "QUOTAFLOW_ADMIN_TOKEN"}
