"""The README shows the real help of `quotaflow` and of every subcommand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_cli_help_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "readme_cli_help", ROOT / "scripts" / "readme_cli_help.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert mod.START in readme
    assert mod.render(readme) == readme, (
        "README's CLI help is stale: run python scripts/readme_cli_help.py"
    )
    for name in mod.COMMANDS:
        assert f"Usage: quotaflow {name} [OPTIONS]" in readme
