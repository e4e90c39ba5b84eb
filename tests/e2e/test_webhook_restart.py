"""An alert webhook survives a restart of the server process: the alert is written to the
durable outbox while the receiver is down, and delivered — once, signed — by the next
process on the same data folder once the receiver listens."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.hooks import until, webhook_receiver
from tests.e2e.procs import Proc, chat_status, gateway
from tests.scale.services import free_port

pytestmark = pytest.mark.e2e

SECRET = "hook-restart-secret"


def outbox(home: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{home / 'quotaflow.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM notify_outbox ORDER BY id")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


async def started(stack: contextlib.ExitStack, config: str, home: Path) -> Proc:
    """A server process, started off the event loop (the receiver keeps serving)."""
    return await asyncio.to_thread(stack.enter_context, gateway(config, home))


async def test_an_alert_queued_while_the_receiver_is_down_is_delivered_after_a_restart(
    fresh_fake: Proc, home: Path
) -> None:
    port = free_port()  # the receiver's, closed for now
    config = f"""
settings: {{alert_levels: [0.1]}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: [{{metric: tokens, window: day, amount: 100}}]}}]
notify:
  - {{url: "http://127.0.0.1:{port}/hook", secret: {SECRET}}}
"""
    with contextlib.ExitStack() as stack:
        gw = await started(stack, config, home)
        assert await asyncio.to_thread(chat_status, gw.url) == 200  # 12 % of the day's quota
        assert await until(lambda: any(r["attempts"] >= 1 for r in outbox(home)), 15)
    (queued,) = outbox(home)
    assert queued["done_at"] is None and queued["last_error"]

    async with webhook_receiver(port) as hook:
        with contextlib.ExitStack() as stack:
            await started(stack, config, home)
            assert await until(lambda: len(hook.bodies) == 1, 15)
            await asyncio.sleep(2.5)  # a second delivery would come within the next polls
    ((event, raw, headers),) = zip(hook.bodies, hook.raw, hook.headers, strict=True)
    assert event["event"] == "threshold" and event["id"] == queued["event_id"]
    assert headers["x-quotaflow-event-id"] == queued["event_id"]
    want = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["x-quotaflow-signature"] == f"sha256={want}"
    (done,) = outbox(home)
    assert done["done_at"] is not None
