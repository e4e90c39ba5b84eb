"""Scale-out tests run against the machine's Redis and PostgreSQL (see services.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.scale.services import (
    create_database,
    drop_database,
    drop_prefix,
    require_postgres,
    require_redis,
    unique_prefix,
)


@pytest.fixture
async def redis_url_prefix() -> AsyncIterator[tuple[str, str]]:
    """The shared Redis and a key prefix of this test's own (dropped afterwards)."""
    url = require_redis()
    prefix = unique_prefix()
    yield url, prefix
    await drop_prefix(url, prefix)


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test (dropped afterwards)."""
    require_postgres()
    dsn = await create_database()
    yield dsn
    await drop_database(dsn)
