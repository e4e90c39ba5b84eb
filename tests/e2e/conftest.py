from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import Proc, fake_control, fake_provider

KEYS = ["sk-test-alpha-0001", "sk-test-bravo-0002", "sk-test-charlie-0003"]
DEAD = "sk-test-dead-0000"


@pytest.fixture(scope="module")
def fake() -> Iterator[Proc]:
    args: list[str] = []
    for k in KEYS:
        args += ["--key", k]
    args += ["--invalid-key", DEAD]
    with fake_provider("openai", *args) as p:
        yield p


@pytest.fixture
def fresh_fake(fake: Proc) -> Proc:
    fake_control(fake, "/_fake/reset")
    fake_control(fake, "/_fake/faults", method="DELETE")
    for k in KEYS:
        fake_control(fake, "/_fake/keys", {"key": k, "quota_tokens": None, "invalid": False})
    return fake


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"
