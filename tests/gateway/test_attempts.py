"""The attempt loop on a frozen clock: one attempt for plain and streamed calls, fallback to
the next key, no retry of a client error, at most ``max_attempts``, a bounded wait for a
window to free (the clock moves only when the gateway sleeps), and upstream text masked.

The project's fake provider, and one scripted upstream that echoes the key, stand in for
providers; the gateway's clock is a :class:`FrozenClock`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from quotaflow.errors import BadRequest, QuotaflowError, UpstreamError
from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider
from quotaflow.fake_provider.faults import Fault
from quotaflow.gateway import Gateway
from quotaflow.storage.base import LedgerQuery, LedgerRow
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock, config

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 5,
}


def _config(base_url: str, keys: list[dict[str, Any]], **settings: Any) -> Any:
    return config({
        "settings": {"strategy": "priority", "preferred_providers": [], "max_wait_s": 0, **settings},
        "providers": [{"name": "p", "protocol": "openai", "base_url": base_url, "models": ["m"],
                       "keys": keys}],
    })  # fmt: skip


def _keys(*secrets: str) -> list[dict[str, Any]]:
    return [
        {"id": f"k{i}", "secret": s, "priority": i, "limits": []} for i, s in enumerate(secrets)
    ]


@asynccontextmanager
async def gateway(
    tmp_path: Path, cfg: Any, clock: FrozenClock, sleep: Callable[[float], Any] | None = None
) -> AsyncIterator[Gateway]:
    kw: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    gw = Gateway(cfg, ledger=SqliteLedger(tmp_path / "q.db"), clock=clock, **kw)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


async def rows(gw: Gateway) -> list[LedgerRow]:
    return await gw.ledger.query(LedgerQuery(limit=50, newest_first=False))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_dead_key_falls_back_to_the_next_in_plain_and_streamed_calls(
    tmp_path: Path, stream: bool
) -> None:
    keys = {"sk-dead-000000": KeyState(invalid=True), "sk-live-000000": KeyState()}
    async with running_fake_provider(FakeProviderConfig(keys=keys)) as fake:
        cfg = _config(fake.base_url, _keys("sk-dead-000000", "sk-live-000000"))
        async with gateway(tmp_path, cfg, FrozenClock()) as gw:
            if stream:
                s = await gw.open_stream({**BODY, "stream": True})
                out: list[bytes] = []

                async def write(b: bytes) -> None:
                    out.append(b)

                await s.pump(write)
                attempts, answered_by = s.attempts, s.headers["x-quotaflow-key"]
                assert b"".join(out).endswith(b"data: [DONE]\n\n")
            else:
                outcome = await gw.chat(BODY)
                attempts, answered_by = outcome.attempts, outcome.key.label
            assert answered_by == "k1"
            assert [(a.key_id, a.outcome, a.error_kind) for a in attempts] == [
                ("k0", "error", "auth"),
                ("k1", "ok", None),
            ]
            assert gw.health["k0"].disabled_reason  # a dead key is taken out of routing
            booked = await rows(gw)
            assert [(r.key_id, r.status, r.stream) for r in booked] == [
                ("k0", "error", stream),
                ("k1", "ok", stream),
            ]
            assert booked[1].total_tokens > 0 and booked[0].total_tokens == 0
            assert gw.changes >= 2  # each booked attempt is a change watchers see


async def test_a_client_error_is_returned_at_once_without_trying_another_key(
    tmp_path: Path,
) -> None:
    async with running_fake_provider(FakeProviderConfig()) as fake:
        fake.state.faults.add(Fault("status", status=400))
        cfg = _config(fake.base_url, _keys("sk-a-00000000", "sk-b-00000000"))
        async with gateway(tmp_path, cfg, FrozenClock()) as gw:
            with pytest.raises(BadRequest) as err:
                await gw.chat(BODY)
            assert [a["key"] for a in err.value.details["attempts"]] == ["k0"]
            assert len(await rows(gw)) == 1


async def test_the_loop_stops_after_max_attempts(tmp_path: Path) -> None:
    async with running_fake_provider(FakeProviderConfig()) as fake:
        fake.state.faults.add(Fault("status", status=503, count=-1))
        secrets = [f"sk-{i}-000000000" for i in range(4)]
        cfg = _config(fake.base_url, _keys(*secrets), max_attempts=3)
        async with gateway(tmp_path, cfg, FrozenClock()) as gw:
            with pytest.raises(UpstreamError) as err:
                await gw.chat(BODY)
            assert [a["key"] for a in err.value.details["attempts"]] == ["k0", "k1", "k2"]
            assert [r.status for r in await rows(gw)] == ["error"] * 3


async def test_a_full_window_is_waited_for_on_the_frozen_clock(tmp_path: Path) -> None:
    clock = FrozenClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    keys = [{"id": "k0", "secret": "sk-one-0000000", "limits": [
        {"metric": "requests", "window": "rolling 20s", "amount": 1}]}]  # fmt: skip
    async with running_fake_provider(FakeProviderConfig()) as fake:
        cfg = _config(fake.base_url, keys, max_wait_s=30)
        async with gateway(tmp_path, cfg, clock, sleep) as gw:
            await gw.chat(BODY)
            assert slept == []
            clock.advance(5)
            second = await gw.chat(BODY)
            assert second.key.id == "k0"
            assert len(slept) == 1 and 14.9 < slept[0] < 15.1  # until the first use ages out


async def test_a_window_beyond_max_wait_is_a_429_naming_the_limit(tmp_path: Path) -> None:
    keys = [{"id": "k0", "secret": "sk-one-0000000", "limits": [
        {"metric": "requests", "window": "rolling 60s", "amount": 1}]}]  # fmt: skip
    async with running_fake_provider(FakeProviderConfig()) as fake:
        cfg = _config(fake.base_url, keys, max_wait_s=10)
        async with gateway(tmp_path, cfg, FrozenClock()) as gw:
            await gw.chat(BODY)
            with pytest.raises(QuotaflowError) as err:
                await gw.chat(BODY)
            assert err.value.status == 429
            assert err.value.headers["retry-after"] == "60"


SECRET = "sk-echo-Zq8vX1cT4mW7nB2rL5kP9dF3"


def echoed(sent: str) -> str:
    return f"Incorrect API key provided: {sent} (…{sent[8:20]}…)"


def quoted_as_openai(sent: str) -> str:
    """How OpenAI quotes a key it refuses: its first 20 characters, stars, its last four."""
    return f"Incorrect API key provided: {sent[:20]}************{sent[-4:]}."


@asynccontextmanager
async def echoing_upstream(quote: Callable[[str], str] = echoed) -> AsyncIterator[str]:
    """A provider that puts the key it was sent, whole or in part (``quote``), into its 401."""

    async def chat(request: web.Request) -> web.Response:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ")
        message = quote(sent)
        error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
        return web.json_response({"error": error}, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_key_echoed_by_the_provider_is_masked_before_it_is_kept_or_returned(
    tmp_path: Path, stream: bool
) -> None:
    async with echoing_upstream() as url:
        cfg = _config(url, _keys(SECRET))
        async with gateway(tmp_path, cfg, FrozenClock()) as gw:
            with pytest.raises(QuotaflowError) as err:
                if stream:
                    await gw.open_stream({**BODY, "stream": True})
                else:
                    await gw.chat(BODY)
            shown = repr((err.value.message, err.value.details, err.value.to_openai()))
            kept = repr([(r.detail, r.extra) for r in await rows(gw)])
            reason = gw.health["k0"].disabled_reason or ""
            for text in (shown, kept, reason):
                assert SECRET not in text and SECRET[8:20] not in text
            assert "sk-echo" in kept  # shown in its masked form, so an operator can tell


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refusal_quoting_a_stem_keys_share_names_the_refused_key_not_another(
    tmp_path: Path, stream: bool
) -> None:
    leak1, leak2 = "sk-test-leakysecret-ABCDEF1234567890", "sk-test-leakysecret-ZYXWVU0987654321"
    async with echoing_upstream(quoted_as_openai) as url:
        cfg = _config(url, _keys(leak1, leak2))
        async with gateway(tmp_path, cfg, FrozenClock()) as gw:
            with pytest.raises(QuotaflowError) as err:
                if stream:
                    await gw.open_stream({**BODY, "stream": True})
                else:
                    await gw.chat(BODY)
            shown = {a["key"]: a["message"] for a in err.value.details["attempts"]}
            kept = {r.key_id: r.detail or "" for r in await rows(gw)}
            for key_id, secret, other in (("k0", leak1, leak2), ("k1", leak2, leak1)):
                reason = gw.health[key_id].disabled_reason or ""
                for text in (shown[key_id], kept[key_id], reason):
                    assert "sk-test…" + secret[-4:] in text  # the refused key, masked
                    assert other[-4:] not in text and "leakysecret" not in text


async def test_a_refusal_for_quota_at_the_provider_says_when_a_key_can_serve_again(
    tmp_path: Path,
) -> None:
    """The provider sends no Retry-After with its "quota exhausted"; the gateway keeps the
    key out for an hour, and the 429 says when a key can serve again: here the other key,
    whose own hour frees sooner (the request never got to try it)."""
    start = 1_767_225_600.0 + 10.5 * 3600  # 10:30 UTC
    keys = {
        "sk-full-0000000": KeyState(),
        "sk-empty-000000": KeyState(quota_tokens=1, used_tokens=1),
    }
    cfg_keys = [
        {"id": "full", "secret": "sk-full-0000000", "priority": 0,
         "limits": [{"metric": "requests", "window": "hour", "amount": 1}]},
        {"id": "empty", "secret": "sk-empty-000000", "priority": 1, "limits": []},
    ]  # fmt: skip
    clock = FrozenClock(start)
    async with running_fake_provider(FakeProviderConfig(keys=keys)) as fake:
        cfg = _config(fake.base_url, cfg_keys)
        async with gateway(tmp_path, cfg, clock) as gw:
            await gw.chat(BODY)  # the full key's request of the hour
            with pytest.raises(QuotaflowError) as err:
                await gw.chat(BODY)
            assert gw.health["empty"].depleted_until == start + 3600
    assert err.value.status == 429
    assert [a["key"] for a in err.value.details["attempts"]] == ["empty"]
    assert err.value.headers["retry-after"] == "1800"  # 11:00, when the full key's hour ends
    assert err.value.details["first_frees_at"] == start + 1800
    assert err.value.message.endswith("The first frees in 30m.")


async def test_a_lone_key_out_of_quota_at_the_provider_is_retried_when_it_is_back(
    tmp_path: Path,
) -> None:
    keys = {"sk-empty-000000": KeyState(quota_tokens=1, used_tokens=1)}
    async with running_fake_provider(FakeProviderConfig(keys=keys)) as fake:
        cfg = _config(fake.base_url, _keys("sk-empty-000000"))
        async with gateway(tmp_path, cfg, FrozenClock()) as gw:
            with pytest.raises(QuotaflowError) as err:
                await gw.chat(BODY)
            with pytest.raises(QuotaflowError) as again:
                await gw.chat(BODY)  # refused before any attempt: the key is still out
    assert err.value.status == again.value.status == 429
    assert err.value.headers["retry-after"] == again.value.headers["retry-after"] == "3600"
