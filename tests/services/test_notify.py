"""Alert webhooks through the durable outbox, to a real HTTP receiver."""

import asyncio
import hashlib
import hmac
import json

import pytest
from aiohttp import web

from quotaflow.clock import FrozenClock
from quotaflow.config.schema import NotifySpec
from quotaflow.gateway.upstream import make_client
from quotaflow.runtime import Runtime, build_gateway
from quotaflow.services.notify import Notifier, Post, event_of, send_test, transport_post
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.storage.management import AlertRow
from quotaflow.testing import config
from tests.httpclient.servers import forward_proxy

SECRET = "hook-secret-for-tests"


class Receiver:
    """A webhook endpoint answering 500 to its first ``fail`` calls, then 204."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.calls: list[tuple[dict, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append((request.headers.copy(), body))
        if len(self.calls) <= self.fail:
            return web.Response(status=500, text="not now")
        return web.Response(status=204)

    @property
    def delivered(self) -> list[tuple[dict, bytes]]:
        return self.calls[self.fail :]


@pytest.fixture
async def receiver():
    recv = Receiver(fail=2)
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    recv.url = f"http://127.0.0.1:{port}/hook"
    yield recv
    await runner.cleanup()


@pytest.fixture
async def post():
    """Webhook POSTs through the project's HTTP client, as the server sends them."""
    http = make_client(5.0)
    yield transport_post(lambda: http)
    await http.close()


def alert(kind="key_disabled", subject="key:openai-1#disabled", level="error", ts=1.0):
    return AlertRow(ts, kind, subject, level, f"{subject} {level}")


async def test_a_receiver_failing_twice_gets_each_event_once_signed_across_a_restart(
    tmp_path, receiver, post: Post
):
    clock = FrozenClock()
    spec = NotifySpec(url=receiver.url, secret=SECRET)
    ledger = SqliteLedger(tmp_path / "q.db")
    await ledger.open()
    notifier = Notifier(ledger, [spec], post=post, clock=clock, backoff_s=1.0)
    assert await notifier.publish(alert()) == 1
    assert await notifier.publish(alert("all_exhausted", "all_keys#exhausted", "critical")) == 1
    assert await notifier.publish(alert()) == 1  # the same event again: stored once
    assert await notifier.deliver_due() == 0  # both fail (500, 500)
    assert await notifier.deliver_due() == 0  # not due yet: backing off
    await ledger.close()  # restart

    ledger = SqliteLedger(tmp_path / "q.db")
    await ledger.open()
    notifier = Notifier(ledger, [spec], post=post, clock=clock, backoff_s=1.0)
    clock.advance(1.0)
    assert await notifier.deliver_due() == 2
    clock.advance(3600.0)
    assert await notifier.deliver_due() == 0
    await ledger.close()

    assert len(receiver.calls) == 4
    events = [json.loads(body) for _, body in receiver.delivered]
    assert sorted(e["event"] for e in events) == ["all_failed", "key_invalid"]
    for headers, body in receiver.delivered:
        want = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Quotaflow-Signature"] == f"sha256={want}"
        assert headers["X-Quotaflow-Event-Id"] == json.loads(body)["id"]


async def test_only_the_events_a_destination_asked_for_are_stored(tmp_path, post: Post):
    ledger = SqliteLedger(tmp_path / "q.db")
    await ledger.open()
    spec = NotifySpec(url="http://127.0.0.1:9/hook", events=["recovered"])
    notifier = Notifier(ledger, [spec], post=post, clock=FrozenClock())
    assert await notifier.publish(alert()) == 0
    assert await notifier.publish(alert(level="recovered")) == 1
    await ledger.close()


def test_events_map_alert_kinds():
    assert event_of(alert("limit", "key:a:tokens:day", "90%"))["event"] == "threshold"
    assert event_of(alert("limit", "key:a:tokens:day", "100%"))["event"] == "depleted"
    assert event_of(alert("key_depleted", "key:a#depleted"))["event"] == "depleted"
    assert event_of(alert("provider_failing", "provider:x#failing"))["event"] == "provider_failing"
    assert event_of(alert(level="recovered"))["event"] == "recovered"
    assert event_of(alert("something_else")) is None


async def test_the_slack_format_is_a_readable_message(receiver, post: Post):
    receiver.fail = 0
    result = await send_test(NotifySpec(url=receiver.url, format="slack"), post)
    assert result.ok
    ((headers, body),) = receiver.calls
    text = json.loads(body)["text"]
    assert "quotaflow: quota threshold crossed" in text and "90%" in text
    assert "X-Quotaflow-Signature" not in headers


def test_a_destination_must_be_an_http_url_and_name_known_events():
    with pytest.raises(ValueError, match="http"):
        NotifySpec(url="hooks.example.com/x")
    with pytest.raises(ValueError, match="unknown event"):
        NotifySpec(url="https://hooks.example.com/x", events=["everything"])


async def test_webhooks_go_through_the_gateways_http_client_and_its_proxy(
    tmp_path, receiver, monkeypatch
):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    receiver.fail = 0
    async with forward_proxy() as (proxy, seen):
        cfg = config(
            {
                "settings": {"proxy": proxy},
                "providers": [{"name": "openai", "keys": [{"secret": "sk-notify-proxy-0001"}]}],
                "notify": [{"url": receiver.url, "secret": SECRET}],
            }
        )
        gw = build_gateway(cfg, tmp_path)
        rt = Runtime.build(gw, tmp_path)
        await rt.start()
        try:
            assert rt.notifier is not None
            assert await rt.notifier.publish(alert()) == 1  # its delivery task sends it
            for _ in range(200):
                if receiver.calls:
                    break
                await asyncio.sleep(0.05)
        finally:
            await rt.close()
    assert seen.lines == [f"POST {receiver.url} HTTP/1.1"]  # the proxy carried it
    ((_, body),) = receiver.calls
    assert json.loads(body)["event"] == "key_invalid"
