"""The server's garbage collection after start-up: frozen start-up, fewer young collections."""

from __future__ import annotations

import subprocess
import sys

from quotaflow.cli.serve import GC_MIDDLE, GC_YOUNG


def test_after_start_up_what_it_built_is_frozen_and_young_collections_are_rare() -> None:
    # In a process of its own: the test process's collector is left as it is.
    code = (
        "import gc; from quotaflow.cli.serve import settle_gc; gc.disable(); "
        "keep = [[i] for i in range(1000)]; settle_gc(); "
        "print(gc.isenabled(), gc.get_freeze_count() >= 1000, *gc.get_threshold()[:2])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "True", str(GC_YOUNG), str(GC_MIDDLE)]
    # A few requests in flight hold more young objects than Python's default threshold (700).
    assert GC_YOUNG > 700 and GC_MIDDLE > 10
