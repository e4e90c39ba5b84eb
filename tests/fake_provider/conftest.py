"""Fixtures for the fake provider's own tests: one server per test, raw HTTP helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider
from quotaflow.fake_provider.config import ProtocolName
from quotaflow.fake_provider.server import FakeProviderHandle


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeProviderHandle]:
    async with running_fake_provider(protocol="openai") as fake:
        yield fake


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeProviderHandle]:
    async with running_fake_provider(protocol="anthropic") as fake:
        yield fake


@pytest.fixture
async def gemini_fake() -> AsyncIterator[FakeProviderHandle]:
    async with running_fake_provider(protocol="gemini") as fake:
        yield fake


def keyed(protocol: ProtocolName, **keys: KeyState) -> FakeProviderConfig:
    """A config accepting only ``keys``."""
    return FakeProviderConfig(protocol=protocol, keys=dict(keys))


async def control(
    http: aiohttp.ClientSession, fake: FakeProviderHandle, method: str, path: str, body: Any = None
) -> Any:
    """Call the control API and return its JSON, asserting success."""
    async with http.request(method, fake.url + "/_fake/" + path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def read_until_cut(resp: aiohttp.ClientResponse, into: bytearray) -> None:
    """Read a response body into ``into`` until it ends (or breaks, raising)."""
    async for data in resp.content.iter_any():
        into += data


def sse_events(raw: bytes, separator: bytes = b"\n\n") -> list[bytes]:
    """Split a raw SSE body into its events (the last, empty piece dropped)."""
    parts = raw.split(separator)
    assert parts[-1] == b"", f"stream does not end with a complete event: {raw[-80:]!r}"
    return parts[:-1]
