"""The ``/_fake/`` control API and the live knobs, over raw HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from quotaflow.fake_provider import FakeProviderConfig, KeyState, create_app, running_fake_provider
from quotaflow.fake_provider.server import STATE_KEY, FakeProviderHandle

from .conftest import control

HELLO = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


async def chat(http: aiohttp.ClientSession, fake: FakeProviderHandle, key: str = "k", **extra: object) -> tuple[int, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(
        fake.base_url + "/chat/completions", json={**HELLO, **extra}, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def test_stats_count_successes_and_errors_by_key_and_model(openai_fake: FakeProviderHandle, http: aiohttp.ClientSession) -> None:  # fmt: skip
    await chat(http, openai_fake, "a")
    await chat(http, openai_fake, "a", max_tokens=0)  # 400, model unknown to stats
    await chat(http, openai_fake, "b", max_tokens=2)
    stats = await control(http, openai_fake, "GET", "stats")
    assert (stats["requests"], stats["errors"]) == (3, 1)
    assert stats["by_key"]["a"] == {
        "requests": 2, "errors": 1, "prompt_tokens": 8, "completion_tokens": 16,
        "used_tokens": 24, "quota_tokens": None, "invalid": False,
    }  # fmt: skip
    assert stats["by_key"]["b"]["completion_tokens"] == 2
    assert stats["by_model"] == {
        "m": {"requests": 2, "errors": 0, "prompt_tokens": 16, "completion_tokens": 18}
    }


async def test_adding_a_key_switches_to_known_keys_only(openai_fake: FakeProviderHandle, http: aiohttp.ClientSession) -> None:  # fmt: skip
    assert (await chat(http, openai_fake, "anything"))[0] == 200
    added = await control(http, openai_fake, "POST", "keys", {"key": "k1", "quota_tokens": 20})
    assert added == {
        "key": "k1",
        "quota_tokens": 20,
        "used_tokens": 0,
        "requests": 0,
        "invalid": False,
    }
    assert (await chat(http, openai_fake, "anything"))[0] == 401
    assert (await chat(http, openai_fake, "k1"))[0] == 200
    status, body = await chat(http, openai_fake, "k1")
    assert status == 429
    assert body["error"]["code"] == "insufficient_quota"
    await control(http, openai_fake, "POST", "keys", {"key": "k1", "quota_tokens": None})
    assert (await chat(http, openai_fake, "k1"))[0] == 200
    await control(http, openai_fake, "POST", "keys", {"key": "k1", "invalid": True})
    assert (await chat(http, openai_fake, "k1"))[0] == 401
    keys = openai_fake.state.config.keys
    assert keys is not None
    assert keys["k1"].quota_tokens is None
    assert keys["k1"].used_tokens == 48


async def test_reset_clears_usage_stats_and_faults(http: aiohttp.ClientSession) -> None:
    async with running_fake_provider(
        FakeProviderConfig(keys={"k": KeyState(quota_tokens=10)}, rpm=1)
    ) as fake:
        assert (await chat(http, fake))[0] == 200
        assert (await chat(http, fake))[0] == 429
        await control(http, fake, "POST", "faults", {"kind": "status", "status": 500, "count": -1})
        await control(http, fake, "POST", "reset")
        assert fake.state.stats_json()["requests"] == 0
        assert (await control(http, fake, "GET", "faults"))["faults"] == []
        assert (await chat(http, fake))[0] == 200  # quota and rpm window are fresh again
        assert fake.state.config.keys == {
            "k": KeyState(quota_tokens=10, used_tokens=24, requests=1)
        }


async def test_config_knobs_change_live(
    openai_fake: FakeProviderHandle, http: aiohttp.ClientSession
) -> None:
    config = await control(
        http, openai_fake, "POST", "config", {"completion_tokens": 2, "latency_ms": 150, "rpm": 5}
    )
    assert config["completion_tokens"] == 2
    assert config["rpm"] == 5
    assert config["protocol"] == "openai"
    started = time.monotonic()
    status, body = await chat(http, openai_fake)
    elapsed = time.monotonic() - started
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "alpha beta"
    assert elapsed >= 0.14
    await control(http, openai_fake, "POST", "config", {"latency_ms": 0, "rpm": None})
    assert openai_fake.state.config.rpm is None
    assert openai_fake.state.config.latency_ms == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("config", {"latency": 5}),
        ("config", {"rpm": 0}),
        ("config", {"completion_tokens": 1.5}),
        ("config", {"latency_ms": True}),
        ("keys", {"quota_tokens": 5}),
        ("keys", {"key": "k", "quota_tokens": -1}),
        ("keys", {"key": "k", "invalid": "yes"}),
        ("faults", {"kind": "status", "status": 99}),
        ("faults", [1, 2]),
        ("faults", {"kind": "status", "stauts": 503}),  # a typo is refused, not ignored
        ("faults", {"kind": "timeout", "times": 2}),
        ("keys", {"key": "k", "quota": 5}),
    ],
)
async def test_control_rejects_bad_input(openai_fake: FakeProviderHandle, http: aiohttp.ClientSession, path: str, body: object) -> None:  # fmt: skip
    async with http.post(openai_fake.url + "/_fake/" + path, json=body) as resp:
        assert resp.status == 400
        assert isinstance((await resp.json())["error"], str)


async def test_chunk_delay_spaces_out_stream_chunks(http: aiohttp.ClientSession) -> None:
    async with running_fake_provider(chunk_delay_ms=40, completion_tokens=4) as fake:
        body = {**HELLO, "stream": True}
        arrivals: list[float] = []
        async with http.post(fake.base_url + "/chat/completions", json=body, headers={"Authorization": "Bearer k"}) as resp:  # fmt: skip
            async for _ in resp.content:  # one line at a time
                arrivals.append(time.monotonic())
    total = arrivals[-1] - arrivals[0]
    assert total >= 4 * 0.04 * 0.9  # 3 gaps between the 4 words + one before the tail


async def test_timeout_fault_is_released_when_the_server_stops(http: aiohttp.ClientSession) -> None:
    async with running_fake_provider() as fake:
        await control(http, fake, "POST", "faults", {"kind": "timeout"})
        request = asyncio.ensure_future(chat(http, fake))
        await asyncio.sleep(0.2)
        assert not request.done()
        started = time.monotonic()
    assert time.monotonic() - started < 2.5
    with pytest.raises(aiohttp.ClientError):
        await request


async def test_a_dropped_stream_is_charged_for_what_was_sent(http: aiohttp.ClientSession) -> None:
    async with running_fake_provider(chunk_delay_ms=30) as fake:
        headers = {"Authorization": "Bearer k"}
        async with http.post(fake.base_url + "/chat/completions", json={**HELLO, "stream": True}, headers=headers) as resp:  # fmt: skip
            await resp.content.readline()
            await resp.content.readline()
        await asyncio.sleep(0.2)
        stats = fake.state.stats_json()["by_key"]["k"]
    assert stats["prompt_tokens"] == 8
    assert 1 <= stats["completion_tokens"] < 16


def test_create_app_keeps_the_config_object_live() -> None:
    config = FakeProviderConfig(protocol="gemini")
    app = create_app(config)
    assert app[STATE_KEY].config is config
    with pytest.raises(ValueError, match="protocol"):
        FakeProviderConfig(protocol="cohere")  # type: ignore[arg-type]


async def test_wall_clock_is_injectable(http: aiohttp.ClientSession) -> None:
    async with running_fake_provider(protocol="anthropic", rpm=5) as fake:
        fake.state.wall_clock = lambda: 1_755_780_000.0
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        body = {"model": "c", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(fake.url + "/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 200
            reset = resp.headers["anthropic-ratelimit-requests-reset"]
    # The window opened by this request closes 60 s after the pinned wall-clock time.
    assert reset in ("2025-08-21T12:40:59Z", "2025-08-21T12:41:00Z")
