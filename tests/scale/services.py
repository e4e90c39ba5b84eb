"""The machine's Redis and PostgreSQL for scale-out tests: reachable, or skip (fail on CI).

Tests that need them skip when they are unreachable locally; with ``CI=true`` in the
environment they fail instead, so a CI without the services cannot pass silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def require(service: str, host: str, port: int) -> None:
    """Skip (or fail when ``CI=true``) unless ``service`` answers on ``host:port``."""
    if _reachable(host, port):
        return
    msg = f"{service} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{msg} (CI=true: scale tests must run on CI)", pytrace=False)
    pytest.skip(msg)


def require_redis() -> str:
    require("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def require_postgres() -> str:
    require("PostgreSQL", PG_HOST, PG_PORT)
    return PG_ADMIN_DSN


def unique_prefix() -> str:
    """A Redis key prefix of its own, so tests never see each other's counters."""
    return f"qftest:{uuid.uuid4().hex[:12]}:"


async def drop_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


async def create_database() -> str:
    """A fresh database ``qf_test_<random>``; returns its DSN."""
    import asyncpg

    name = f"qf_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"


async def drop_database(dsn: str) -> None:
    import asyncpg

    name = dsn.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def own_redis(port: int | None = None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A private redis-server (no persistence) on a free port, stopped afterwards."""
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed (CI=true)", pytrace=False)
        pytest.skip("redis-server is not installed")
    port = port or free_port()
    proc = start_redis(exe, port)
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def start_redis(exe: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _reachable("127.0.0.1", port):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.02)
    return proc
