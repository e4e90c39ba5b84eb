"""docs/cli.md and docs/configuration.md are generated from the code and kept current."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reference_docs", ROOT / "scripts" / "reference_docs.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_docs_are_current() -> None:
    mod = _script()
    assert mod.stale() == [], "docs are stale: run python scripts/reference_docs.py"


def test_cli_reference_has_every_command() -> None:
    mod = _script()
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for path in mod.command_paths():
        assert f"Usage: quotaflow {' '.join(path)} [OPTIONS]" in text


def test_configuration_reference_describes_every_field() -> None:
    from quotaflow.config.schema import ConfigSpec

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    models = [ConfigSpec]
    seen: set[type] = set()
    while models:
        model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert f"| `{name}` |" in text
        for field in model.model_fields.values():
            for arg in _model_args(field.annotation):
                models.append(arg)
    assert len(seen) >= 12


def _model_args(annotation: object) -> list[type]:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in get_args(annotation) for m in _model_args(a)]
