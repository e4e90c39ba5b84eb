"""Alerts: each crossing recorded once, listed by the API.

Watched: every limit (keys, providers, routes, global, agents) against the levels of
``settings.alert_levels`` (seed 002: 75 / 90 / 95 %, of committed use); a key disabled (on
purpose) or invalid (refused by its provider); a provider failing (a key's circuit open); all
keys exhausted. A subject's last level is persisted, so a level that holds is never reported
twice, not even across a restart; when usage falls back (a reset, a new window) the next
crossing is reported again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from quotaflow.config.describe import limit_alert
from quotaflow.engine import health as hl
from quotaflow.engine.limits import Limit
from quotaflow.gateway import Gateway
from quotaflow.storage.management import AlertRow, ManagementStore

LimitsSource = Callable[[], list[Limit]]
RECOVERED = "recovered"  # the level an alert's subject is reported at when it ends
# What the operator can do about each alert, printed with its warning (a disabled key's is
# made for it: disabled_hint).
HINTS = {
    "limit": "requests move to keys with headroom; raise the limit or add a key if it keeps filling",
    "key_depleted": "the provider says this key's quota is used up; it is skipped until it resets",
    "provider_failing": "requests fall back to other providers; check the provider's status",
    "all_exhausted": "requests get 429 until a window frees: add a key or raise a limit",
}
log = logging.getLogger("quotaflow.events")
# Logged by the gateway when they happen (in the library and the tools too), not again here.
LOGGED_AT_THE_SOURCE = frozenset({"key_invalid"})


CHUNK = 128  # limits (or keys) checked between two turns of the event loop


def _until(at: float | None) -> str:
    if at is None or at == float("inf"):
        return "it is reset"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def _pct(level: float) -> str:
    return f"{level * 100:g}%"


def disabled_hint(key_id: str) -> str:
    """The hint of a key disabled on purpose (by an operator, or the library's
    ``disable_key``): a key its provider refused is ``key_invalid``, hinted where it is
    logged (replace its secret, then enable it)."""
    return (
        "it was disabled on purpose: requests go to the other keys until it is enabled again "
        f"with quotaflow keys enable {key_id} (or the dashboard's key switch)"
    )


class AlertMonitor:
    """Compares the engine's state with the last recorded levels and records crossings."""

    def __init__(
        self,
        gw: Gateway,
        store: ManagementStore,
        extra_limits: LimitsSource,
        on_alert: Callable[[AlertRow], Awaitable[object]] | None = None,
    ) -> None:
        self.gw = gw
        self.store = store
        self.extra_limits = extra_limits
        self.on_alert = on_alert
        self.levels = sorted(gw.settings.alert_levels)
        self._state: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        self._state = await self.store.alert_levels()

    async def check(self) -> list[AlertRow]:
        """Record every new crossing since the last check; returns the new alerts."""
        async with self._lock:
            out: list[AlertRow] = []
            await self._limits(out)
            await self._keys(out)
            return out

    async def _transition(
        self,
        out: list[AlertRow],
        subject: str,
        value: float,
        kind: str,
        label: str,
        message: str,
        hint: str | None = None,
    ) -> None:
        prev = self._state.get(subject, 0.0)
        if value == prev:
            return
        self._state[subject] = value
        episode = None
        if self.store.shared:  # the other replicas watch the same quotas and keys
            stored, last = await self.store.alert_episode(subject)
            if stored == value or (value > prev and stored > value):
                return  # another replica recorded this crossing already
            episode = f"{last}@{stored:g}"  # what a replica seeing it at once sees too
        if value > prev:
            row = AlertRow(self.gw.clock.now(), kind, subject, label, message, episode=episode)
            await self.store.add_alert(row, value)
            out.append(row)
            if kind not in LOGGED_AT_THE_SOURCE:
                log.warning(
                    message,
                    extra={
                        "fields": {
                            "event": kind,
                            "subject": subject,
                            "level": label,
                            "hint": HINTS.get(kind, "") if hint is None else hint,
                        }
                    },
                )
        else:
            await self.store.set_alert_level(subject, value)
            if value > 0:
                return
            row = AlertRow(
                self.gw.clock.now(),
                kind,
                subject,
                RECOVERED,
                f"{subject} recovered",
                episode=episode,
            )
            log.info(row.message, extra={"fields": {"event": "recovered", "subject": subject}})
        if self.on_alert is not None:
            await self.on_alert(row)

    async def _limits(self, out: list[AlertRow]) -> None:
        limits = list(
            {lim.id: lim for lim in (*self.gw.all_limits(), *self.extra_limits())}.values()
        )
        levels, state = self.levels, self._state
        # Every second on the event loop, over every limit: what did not move costs a
        # comparison, a message is written only for a crossing, and requests get the loop
        # between chunks (a check over hundreds of keys would otherwise hold it for ms).
        for start in range(0, len(limits), CHUNK):
            if start:
                await asyncio.sleep(0)
            chunk = limits[start : start + CHUNK]
            usages = await self.gw.counters.snapshot(chunk, self.gw.clock.now())
            for lim_id, u in usages.items():
                amount = u.limit.amount
                share = u.used / amount if amount > 0 else 0.0
                i = bisect_right(levels, share)  # levels are sorted: the highest reached
                reached = levels[i - 1] if i else 0.0
                if reached == state.get(lim_id, 0.0):
                    continue
                message = limit_alert(u.limit, reached, u.used, self.gw.keys)
                await self._transition(out, lim_id, reached, "limit", _pct(reached), message)

    async def _keys(self, out: list[AlertRow]) -> None:
        gw = self.gw
        now = gw.clock.now()
        state = self._state
        usable = 0
        failing: dict[str, str] = {}
        for n, k in enumerate(gw.keys.values()):
            if n and not n % CHUNK:
                await asyncio.sleep(0)
            h = gw.health.setdefault(k.id, hl.Health())
            invalid = hl.is_invalid(h)
            dead = 1.0 if h.disabled_reason and not invalid else 0.0
            subject = f"key:{k.id}#disabled"
            if dead != state.get(subject, 0.0):
                message = f"{k.provider} key {k.label} disabled: {h.disabled_reason}"
                hint = disabled_hint(k.id)
                await self._transition(out, subject, dead, "key_disabled", "warning", message, hint)
            empty = 1.0 if h.depleted_until is not None and h.depleted_until > now else 0.0
            subject = f"key:{k.id}#depleted"
            if empty != state.get(subject, 0.0):
                message = (
                    f"{k.provider} key {k.label} has no quota left until {_until(h.depleted_until)}"
                )
                await self._transition(out, subject, empty, "key_depleted", "100%", message)
            flag = 1.0 if invalid else 0.0
            subject = f"key:{k.id}#invalid"
            if flag != state.get(subject, 0.0):
                why = (h.disabled_reason or "").removeprefix(hl.INVALID_PREFIX)
                message = f"{k.provider} key {k.label} is invalid (the provider rejected it): {why}"
                await self._transition(out, subject, flag, "key_invalid", "error", message)
            if h.circuit != "closed" or h.consecutive_failures >= gw.settings.failure_threshold:
                failing.setdefault(
                    k.provider, h.last_error_message or h.last_error_kind or "errors"
                )
            if k.enabled and hl.unavailable_reason(h, now) is None:
                usable += 1
        for p in gw.config.providers:
            bad = 1.0 if p in failing else 0.0
            subject = f"provider:{p}#failing"
            if bad != state.get(subject, 0.0):
                message = f"provider {p} is failing: {failing.get(p, '')}"
                await self._transition(out, subject, bad, "provider_failing", "error", message)
        exhausted = 1.0 if gw.keys and usable == 0 else 0.0
        if gw.keys and usable:
            exhausted = 1.0 if await self._all_full() else 0.0
        await self._transition(
            out,
            "all_keys#exhausted",
            exhausted,
            "all_exhausted",
            "critical",
            "all keys are exhausted or unavailable: no request can be served",
        )

    async def _all_full(self) -> bool:
        """True when every key has a limit with nothing left (committed use)."""
        gw = self.gw
        limits = [lim for k in gw.keys.values() for lim in k.limits]
        usages = await gw.counters.snapshot(limits, gw.clock.now())
        for k in gw.keys.values():
            if not any(usages[lim.id].used >= lim.amount for lim in k.limits):
                return False
        return True

    async def recent(self, limit: int = 100) -> list[AlertRow]:
        return await self.store.list_alerts(limit)


def alert_json(a: AlertRow, active: bool | None = None) -> dict[str, Any]:
    """An alert as the API lists it; ``active`` (when known): whether it still holds."""
    out: dict[str, Any] = {
        "id": a.id,
        "timestamp": datetime.fromtimestamp(a.ts, UTC).isoformat(),
        "kind": a.kind,
        "subject": a.subject,
        "level": a.level,
        "message": a.message,
    }
    if active is not None:
        out["active"] = active
    return out


def holding(rows: Sequence[AlertRow], levels: Mapping[str, float]) -> list[bool]:
    """For each of ``rows`` (newest first): whether it still holds — the newest alert of its
    subject while the subject is still at an alert level (``levels``: the monitor's last
    level of each subject). An older alert of the subject, or one whose subject has fallen
    back (a reset, a new window, a key enabled again), is over."""
    seen: set[str] = set()
    out = []
    for a in rows:
        out.append(a.subject not in seen and levels.get(a.subject, 0.0) > 0)
        seen.add(a.subject)
    return out


async def alerts_json(store: ManagementStore, rows: Sequence[AlertRow]) -> list[dict[str, Any]]:
    """``rows`` (newest first) as the API lists them, each with ``active``."""
    levels = await store.alert_levels()
    return [alert_json(a, on) for a, on in zip(rows, holding(rows, levels), strict=True)]
