"""Fake providers for tests of blocking code: one running on its own event-loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from quotaflow.fake_provider import FakeProviderConfig, running_fake_provider
from quotaflow.fake_provider.server import FakeProviderHandle


@contextlib.contextmanager
def fake_in_thread(
    config: FakeProviderConfig | None = None, **overrides: Any
) -> Iterator[FakeProviderHandle]:
    """A fake provider served from a background thread, for tests that block (the library)."""
    loop = asyncio.new_event_loop()
    ready: list[FakeProviderHandle] = []
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with running_fake_provider(config, **overrides) as fake:
            ready.append(fake)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "fake provider did not start"
    try:
        yield ready[0]
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def provider_config(
    name: str, base_url: str, secrets: list[str], models: list[str], **extra: Any
) -> dict[str, Any]:
    """One openai-protocol provider entry of a YAML-shaped config."""
    return {
        "name": name,
        "protocol": "openai",
        "base_url": base_url,
        "models": models,
        "keys": [{"id": f"{name}-{i + 1}", "secret": s} for i, s in enumerate(secrets)],
        **extra,
    }
