"""Keeping a replica's key health in step with the other replicas'.

:class:`HealthSync` runs one background task per gateway: it publishes the blocking state of
the keys this replica changed (in the order they changed) and, every ``interval_s``, merges
what the others published (:mod:`quotaflow.storage.health.base` has the rule). Callers stay
synchronous: :meth:`notify` / :meth:`notify_reset` only queue. A store that is down is
logged once and retried; it never breaks routing (each replica then learns on its own, as
in the embedded mode).
"""

from __future__ import annotations

import asyncio
import contextlib

from quotaflow.clock import Clock
from quotaflow.engine import health as hl
from quotaflow.storage.health.base import (
    RESET_KINDS,
    HealthStore,
    ResetKind,
    apply_reset,
    blocking_fields,
    merge,
    stricter_fields,
)
from quotaflow.storage.outage import Outage

_Op = tuple[str, ResetKind | None]  # (key id, None = publish | a reset kind)


class HealthSync:
    """Shares the ``health`` dict's blocking state through ``store``."""

    def __init__(
        self,
        store: HealthStore,
        health: dict[str, hl.Health],
        clock: Clock,
        *,
        interval_s: float = 0.25,
        retry_s: float = 1.0,
    ) -> None:
        self.store = store
        self._health = health
        self._clock = clock
        self.interval_s = interval_s
        self.retry_s = retry_s
        self._ops: list[_Op] = []
        self._wake = asyncio.Event()
        self._known: dict[str, dict[str, str]] = {}  # what the store holds, as last seen
        self._gens: dict[tuple[str, ResetKind], int] = {}
        self._version: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.outage = Outage(
            "the shared key health (Redis)",
            "check that Redis runs and this host reaches it: meanwhile each replica learns "
            "key health on its own; routing goes on",
        )

    def notify(self, key_id: str) -> None:
        """This replica changed ``key_id``'s health: publish what became stricter."""
        self._queue((key_id, None))

    def notify_reset(self, key_id: str, kind: ResetKind) -> None:
        """This replica cleared ``key_id`` (already done locally): clear it everywhere."""
        self._queue((key_id, kind))

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):  # best effort: the last changes of this replica
            await asyncio.wait_for(self._flush(), 1.0)
        await self.store.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_once()
                self.outage.answered()
                delay = self.interval_s
            except Exception as exc:
                self.outage.failed(f"{type(exc).__name__}: {exc}")
                delay = self.retry_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def sync_once(self) -> None:
        """Publish what is queued, then merge the others' changes (one round)."""
        await self._flush()
        await self._pull()

    async def _flush(self) -> None:
        while self._ops:
            key_id, kind = self._ops[0]
            if kind is None:
                h = self._health.get(key_id)
                known = self._known.setdefault(key_id, {})
                fields = stricter_fields(blocking_fields(h), known) if h is not None else {}
                if fields:
                    await self.store.publish(key_id, fields)
                    known.update(fields)
            else:
                self._gens[(key_id, kind)] = await self.store.reset(key_id, kind)
                self._known.pop(key_id, None)  # re-read at the next pull
            self._ops.pop(0)

    async def _pull(self) -> None:
        got = await self.store.changes(self._version)
        if got is None:
            return
        version, states = got
        pending = {k for k, kind in self._ops if kind is not None}  # local resets not sent yet
        now = self._clock.now()
        for key_id, remote in states.items():
            if key_id in pending:
                continue
            h = self._health.setdefault(key_id, hl.Health())
            for kind in RESET_KINDS:
                gen = int(remote.get(f"{kind}_gen") or 0)
                if gen > self._gens.get((key_id, kind), 0):
                    self._gens[(key_id, kind)] = gen
                    apply_reset(h, kind)
            merge(h, remote, now)
            self._known[key_id] = dict(remote)
        self._version = version
