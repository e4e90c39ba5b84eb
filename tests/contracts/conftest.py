"""The ledger fixture both ledger contract suites run over: SQLite, and PostgreSQL when the
scale-out services are there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contracts.test_ledger_backends import Backend


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.scale)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    b = Backend(request.param, tmp_path)
    await b.setup()
    yield b
    await b.teardown()
