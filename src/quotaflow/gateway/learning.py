"""Per key × model statistics (what the ``learned`` and ``bandit`` strategies rank on),
quality feedback, and seed 004's session summary; the statistics are saved now and then."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from quotaflow.clock import Clock
from quotaflow.config.schema import SettingsSpec
from quotaflow.engine import stats as st
from quotaflow.engine.stats import ModelStats, Outcome, SessionTotals
from quotaflow.errors import BadRequest, NotFound
from quotaflow.gateway.keyring import Keyring
from quotaflow.storage.ledger import Ledger

log = logging.getLogger("quotaflow.gateway")


class Learning:
    def __init__(
        self, keyring: Keyring, ledger: Ledger, clock: Clock, settings: SettingsSpec
    ) -> None:
        self._keyring = keyring
        self._ledger = ledger
        self._clock = clock
        self._settings = settings
        self.model_stats: dict[tuple[str, str], ModelStats] = {}
        self.session_totals = SessionTotals()
        self._dirty: set[tuple[str, str]] = set()
        self._saved_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def stats_for(self, key_id: str, model: str) -> ModelStats:
        """The statistics record of one key × model (created empty)."""
        rec = self.model_stats.get((key_id, model))
        if rec is None:
            key = self._keyring.keys.get(key_id)
            provider = key.provider if key else ""
            rec = self.model_stats[(key_id, model)] = ModelStats(provider, key_id, model)
        return rec

    def observe(self, key_id: str, model: str, at: float, outcome: Outcome) -> None:
        """Book one outcome into the key × model's statistics; save them now and then."""
        s = self._settings
        st.observe(
            self.stats_for(key_id, model), outcome, at, s.learning_half_life_s, s.learning_window
        )
        self._dirty.add((key_id, model))
        self._maybe_save()

    def observe_quality(self, s: ModelStats, success: bool, score: float) -> None:
        try:
            st.observe_quality(s, score, success=success)
        except ValueError as exc:
            raise BadRequest(str(exc), param="score") from None
        self._dirty.add((s.key_id, s.model))
        self._maybe_save()

    def record_quality(
        self, provider: str, model: str, success: bool, score: float
    ) -> list[ModelStats]:
        """Seed 004's ``updateQualityScore``: book a task's quality on the key × model records
        of ``provider``/``model`` last used (every key of the provider when none was)."""
        stats = [
            s for s in self.model_stats.values() if s.provider == provider and s.model == model
        ]
        used = [s for s in stats if s.last_used is not None]
        if used:
            latest = max(s.last_used or 0.0 for s in used)
            targets = [s for s in used if s.last_used == latest]
        else:
            keys = self._keyring.provider_keys(provider)
            targets = [self.stats_for(k.id, model) for k in keys]
        if not targets:
            raise NotFound(f"no key of provider {provider!r} is configured", param="provider")
        for s in targets:
            self.observe_quality(s, success, score)
        return targets

    async def record_feedback(
        self,
        score: float,
        *,
        success: bool = True,
        request_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> list[ModelStats]:
        """Quality feedback on a task: by ``request_id`` it lands on the key × model that
        answered that request; by ``provider`` + ``model`` as :meth:`record_quality` says."""
        if request_id is None:
            if provider is None or model is None:
                raise BadRequest("name a request_id, or a provider and a model", param="request_id")
            return self.record_quality(provider, model, success, score)
        rows = [r for r in await self._ledger.request_rows(request_id) if r.key_id and r.model]
        if not rows:
            raise NotFound(f"no request with id {request_id!r} in the ledger", param="request_id")
        answered = [r for r in rows if r.status == "ok"]
        row = (answered or rows)[-1]
        s = self.stats_for(row.key_id, row.model)
        if not s.provider:
            s.provider = row.provider
        self.observe_quality(s, success, score)
        return [s]

    def session_summary(self) -> dict[str, Any]:
        return self.session_totals.summary()

    async def restore(self) -> int:
        """Load the saved key × model statistics."""
        loaded = await self._ledger.load_model_stats()
        for rec in loaded:
            self.model_stats[(rec.key_id, rec.model)] = rec
        self._saved_at = self._clock.monotonic()
        return len(loaded)

    async def save(self) -> int:
        """Save the key × model records changed since the last save; returns how many."""
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            await asyncio.shield(task)
        if not self._dirty:
            return 0
        keys, self._dirty = self._dirty, set()
        records = [self.model_stats[k] for k in sorted(keys) if k in self.model_stats]
        self._saved_at = self._clock.monotonic()
        try:
            await self._ledger.save_model_stats(records, self._clock.now())
        except Exception:
            self._dirty |= keys  # try again next time
            raise
        return len(records)

    def _maybe_save(self) -> None:
        """Start a background save when the last one is ``stats_flush_s`` old."""
        mono = self._clock.monotonic()
        if self._saved_at is None:
            self._saved_at = mono
        due = mono - self._saved_at >= self._settings.stats_flush_s
        if not due or (self._task is not None and not self._task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a plain call): the next save or close() writes them
        self._saved_at = mono
        self._task = loop.create_task(self._save_quietly())

    async def _save_quietly(self) -> None:
        try:
            await self.save()
        except Exception:  # a failed snapshot is retried later; it must never break routing
            log.warning("saving the key × model statistics failed", exc_info=True)
