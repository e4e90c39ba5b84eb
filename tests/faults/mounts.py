"""Small tmpfs mounts for disk-full and read-only faults: root only, skipped elsewhere
(failing instead with ``CI=true``, where the suite runs as root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Mount:
    path: Path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the fault suite runs as root there)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Mount]:
    """A tmpfs of ``size`` at ``path``, unmounted afterwards."""
    if os.geteuid() != 0:
        _unavailable("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        _unavailable(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield Mount(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
