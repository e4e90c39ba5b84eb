"""Alert webhooks: each alert is written to a durable outbox, then POSTed to every
destination that wants its event, retried with backoff until it is delivered.

Events: ``threshold`` (a limit crossed a level), ``depleted`` (a limit or a key used up),
``key_invalid`` (a key disabled after an auth failure), ``provider_failing`` (its circuit
opened), ``all_failed`` (no key can serve), ``recovered`` (one of those ended). An event is
stored once per destination (the alert monitor reports each crossing once, even across a
restart), marked done only after a 2xx, so a restart loses none and a receiver sees each
event once; ``X-Quotaflow-Event-Id`` lets it drop the rare repeat (a crash between its 2xx
and our commit). Delivery runs in its own task with a bounded timeout: never in a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson

from quotaflow._version import __version__
from quotaflow.clock import Clock, SystemClock
from quotaflow.observability.logs import EventLog
from quotaflow.storage.management import AlertRow
from quotaflow.storage.outbox import OutboxRow, OutboxStore

if TYPE_CHECKING:
    from quotaflow.config.schema import NotifySpec
    from quotaflow.httpclient.base import Transport

BACKOFF_S: Final = 2.0
MAX_BACKOFF_S: Final = 300.0
MAX_TRIES: Final = 30  # about two hours of tries at the longest backoff, then given up
POLL_S: Final = 1.0
CLAIM_MARGIN_S: Final = 30.0  # a claimed delivery is tried again this long after its timeout
RECOVERED: Final = "recovered"
EVENT_OF_KIND: Final = {
    "limit": "threshold",
    "key_depleted": "depleted",
    "key_disabled": "key_invalid",
    "key_invalid": "key_invalid",
    "provider_failing": "provider_failing",
    "all_exhausted": "all_failed",
}
TITLES: Final = {
    "threshold": "quota threshold crossed",
    "depleted": "quota used up",
    "key_invalid": "key invalid or disabled",
    "provider_failing": "provider failing",
    "all_failed": "no key can serve requests",
    "recovered": "recovered",
}

log = logging.getLogger("quotaflow.notify")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one POST came to: ``status`` (None when no answer) and the error, if any."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Post = Callable[[str, bytes, dict[str, str], float], Awaitable[Delivery]]


def target_id(url: str) -> str:
    """How the outbox names a destination: never the URL itself (it may hold a token)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "?"


def event_of(alert: AlertRow) -> dict[str, Any] | None:
    """The webhook event an alert becomes (None for kinds no event names)."""
    name = RECOVERED if alert.level == RECOVERED else EVENT_OF_KIND.get(alert.kind)
    if name is None:
        return None
    if name == "threshold" and alert.level == "100%":
        name = "depleted"
    # One id per crossing: what replicas sharing a store agree on, else the moment it was seen.
    seen = alert.episode if alert.episode is not None else repr(alert.ts)
    raw = f"{alert.kind}|{alert.subject}|{alert.level}|{seen}"
    return {
        "id": hashlib.sha256(raw.encode()).hexdigest()[:24],
        "event": name,
        "kind": alert.kind,
        "subject": alert.subject,
        "level": alert.level,
        "message": alert.message,
        "ts": alert.ts,
        "source": "quotaflow",
    }


def render(spec: NotifySpec, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers one destination gets for ``event`` (signed when it has a secret)."""
    if spec.format == "slack":
        icon = ":white_check_mark:" if event["event"] == RECOVERED else ":warning:"
        title = TITLES.get(event["event"], event["event"])
        body = orjson.dumps({"text": f"{icon} *quotaflow: {title}*\n{event['message']}"})
    else:
        body = orjson.dumps(event)
    headers = {
        "content-type": "application/json",
        "user-agent": f"quotaflow/{__version__}",
        "x-quotaflow-event": str(event["event"]),
        "x-quotaflow-event-id": str(event["id"]),
    }
    if spec.secret:
        digest = hmac.new(spec.secret.encode(), body, hashlib.sha256).hexdigest()
        headers["x-quotaflow-signature"] = f"sha256={digest}"
    return body, headers


def transport_post(transport: Callable[[], Transport]) -> Post:
    """POST through ``transport()`` — the gateway's HTTP client, so its proxy and
    connection timeout apply to webhooks as to provider calls; ``timeout_s`` bounds the
    whole delivery. No redirect is followed."""

    async def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Delivery:
        try:
            resp = await transport().post(url, headers, body, timeout_s=timeout_s, whole_body=True)
            try:
                await resp.read(timeout_s)
            finally:
                resp.release()
        except (OSError, TimeoutError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}".replace(
                url, host_of(url)
            )  # a URL may hold a token
            return Delivery(None, why[:300])
        return Delivery(resp.status, None if resp.status < 300 else f"HTTP {resp.status}")

    return post


class Notifier:
    """The outbox's writer and its delivery task; ``post`` sends (see :func:`transport_post`)."""

    def __init__(
        self,
        store: OutboxStore,
        targets: Sequence[NotifySpec],
        *,
        post: Post,
        clock: Clock | None = None,
        events: EventLog | None = None,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self.store = store
        self.targets = {target_id(t.url): t for t in targets}
        self.clock = clock or SystemClock()
        self.post = post
        self.events = events or EventLog(self.clock)
        self.backoff_s = backoff_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, alert: AlertRow) -> int:
        """Store the alert's event for every destination that wants it; returns how many."""
        event = event_of(alert)
        if event is None or not self.targets:
            return 0
        now = self.clock.now()
        body = orjson.dumps(event).decode()
        rows = [
            OutboxRow(tid, event["id"], body, now, now)
            for tid, spec in self.targets.items()
            if event["event"] in spec.events
        ]
        if rows:
            await self.store.outbox_add(rows)
            self._wake.set()
        return len(rows)

    async def deliver_due(self) -> int:
        """Try every due delivery once; returns how many were delivered."""
        now = self.clock.now()
        delivered = 0
        for row in await self.store.outbox_due(now):
            assert row.id is not None
            spec = self.targets.get(row.target)
            if spec is None:  # the destination left the configuration
                await self.store.outbox_done(row.id, now, "destination no longer configured")
                continue
            lease = now + spec.timeout_s + CLAIM_MARGIN_S
            if not await self.store.outbox_claim(row.id, row.next_at, lease):
                continue  # another replica is delivering it
            body, headers = render(spec, orjson.loads(row.body))
            result = await self.post(spec.url, body, headers, spec.timeout_s)
            if result.ok:
                await self.store.outbox_done(row.id, self.clock.now())
                self.events.clear("webhook_failing", row.target)
                delivered += 1
            else:
                await self._failed(row, spec, result.error or "no answer")
        return delivered

    async def _failed(self, row: OutboxRow, spec: NotifySpec, error: str) -> None:
        assert row.id is not None
        tries = row.attempts + 1
        host = host_of(spec.url)
        if tries >= MAX_TRIES:
            await self.store.outbox_done(row.id, self.clock.now(), f"given up: {error}")
            log.error(
                "alert webhook given up after %d tries",
                tries,
                extra={"fields": {"event": "webhook_given_up", "host": host, "error": error}},
            )
            return
        delay = min(self.backoff_s * 2**row.attempts, MAX_BACKOFF_S)
        await self.store.outbox_retry(row.id, self.clock.now() + delay, error)
        self.events.warn(
            "webhook_failing",
            row.target,
            f"alert webhook to {host} failed: {error}",
            hint=f"retrying in {delay:g}s; check the receiver (quotaflow alerts test)",
        )

    # -- the delivery task -------------------------------------------------------------------
    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.create_task(self._run(), name="quotaflow-notify")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception as exc:  # a store outage: try again next tick, never crash
                self.events.warn(
                    "webhook_outbox_unreachable",
                    "outbox",
                    f"cannot read the alert webhooks' outbox: {exc}",
                    hint="deliveries resume when the ledger store answers",
                )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def sample_alert(clock: Clock) -> AlertRow:
    """What ``quotaflow alerts test`` sends."""
    return AlertRow(
        clock.now(),
        "limit",
        "key:example#tokens:day",
        "90%",
        "test alert from quotaflow: key:example tokens/day reached 90% (this is a sample)",
    )


async def send_test(spec: NotifySpec, post: Post, clock: Clock | None = None) -> Delivery:
    """POST a sample event to one destination now, outside the outbox."""
    event = event_of(sample_alert(clock or SystemClock()))
    assert event is not None
    body, headers = render(spec, event)
    return await post(spec.url, body, headers, spec.timeout_s)
