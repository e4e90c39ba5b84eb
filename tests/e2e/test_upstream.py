"""The upstream connection end to end: a real gateway process against a real provider stand-in."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, gateway, ledger_rows
from tests.e2e.test_proxy import client, config
from tests.httpclient.servers import ProxyLog, forward_proxy

pytestmark = pytest.mark.e2e


CLIENTS = ["fast", "aiohttp"]


@pytest.mark.parametrize("http_client", CLIENTS)
def test_a_large_completion_returns_whole(fresh_fake: Proc, home: Path, http_client: str) -> None:
    """A 1.5 MB answer (well over the client's read-ahead mark) comes back 200, charged once."""
    word = "x" * 1_500_000  # one word: one token to the fake model, 1.5 MB of answer
    keys = [("a", KEYS[0], None), ("b", KEYS[1], None)]
    with gateway(config(fresh_fake, keys, settings=f"http_client: {http_client}"), home) as gw:
        resp = client(gw).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"ECHO: {word}"}],
            max_tokens=50,
        )
        assert resp.choices[0].message.content == word
    rows = ledger_rows(home)
    assert [(r["key_id"], r["status"]) for r in rows] == [("a", "ok")]


@contextlib.contextmanager
def proxy_in_a_thread() -> Iterator[tuple[str, ProxyLog]]:
    """The forwarding proxy of the client tests, on its own event loop beside the test."""
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[tuple[str, ProxyLog]] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def run() -> None:
        async with forward_proxy() as found:
            started.set_result(found)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    try:
        yield started.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


@pytest.mark.parametrize("http_client", CLIENTS)
@pytest.mark.parametrize("how", ["environment", "setting"])
def test_provider_calls_go_through_the_proxy(
    fresh_fake: Proc, home: Path, how: str, http_client: str
) -> None:
    with proxy_in_a_thread() as (proxy, log):
        no_proxy = {"NO_PROXY": "", "no_proxy": "", "http_proxy": "", "https_proxy": ""}
        env = {**no_proxy, "HTTP_PROXY": proxy} if how == "environment" else no_proxy
        settings = f"http_client: {http_client}\n" + (f"proxy: {proxy}" if how == "setting" else "")
        cfg = config(fresh_fake, [("a", KEYS[0], None)], settings=settings)
        with gateway(cfg, home, env=env) as gw:
            resp = client(gw).chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "ECHO: via the proxy"}],
                max_tokens=50,
            )
            assert resp.choices[0].message.content == "via the proxy"
    assert log.lines == [f"POST {fresh_fake.url}/v1/chat/completions HTTP/1.1"]


@pytest.mark.parametrize("http_client", CLIENTS)
def test_a_streamed_completion_through_either_client(
    fresh_fake: Proc, home: Path, http_client: str
) -> None:
    cfg = config(fresh_fake, [("a", KEYS[0], None)], settings=f"http_client: {http_client}")
    with gateway(cfg, home) as gw:
        stream = client(gw).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "ECHO: one two three"}],
            max_tokens=50,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three"
    assert [r["status"] for r in ledger_rows(home)] == ["ok"]
