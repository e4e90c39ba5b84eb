"""Every client test runs over both Transport implementations unless it says otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from quotaflow.httpclient import HttpClient
from quotaflow.httpclient.aiohttp_impl import AiohttpClient

Client = HttpClient | AiohttpClient
MakeClient = Callable[..., Client]
IMPLEMENTATIONS: dict[str, Callable[..., Client]] = {"fast": HttpClient, "aiohttp": AiohttpClient}


@pytest.fixture(params=list(IMPLEMENTATIONS))
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[MakeClient]:
    made: list[Client] = []

    def make(**kwargs: Any) -> Client:
        c = IMPLEMENTATIONS[request.param](**kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@pytest.fixture
def client(make_client: MakeClient) -> Client:
    return make_client(connect_timeout_s=2.0)


@pytest.fixture
async def fast_client() -> AsyncIterator[HttpClient]:
    """For what only the default client does (the idle-race re-send, its pool counters)."""
    c = HttpClient(connect_timeout_s=2.0)
    yield c
    await c.close()


def idle_connections(c: Client) -> int | None:
    """The pool's idle count where the implementation shows it (aiohttp's is private)."""
    return c.idle_connections if isinstance(c, HttpClient) else None
