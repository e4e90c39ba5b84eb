"""Seed 000's holds: the reservations ``/api/choose`` handed out until ``/api/use`` settles
them or they expire.

Apart from :mod:`quotaflow.services.switcher` (which re-exports both names) so the management state can
keep them without loading the switcher before its first request."""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(slots=True)
class Hold:
    """A reservation held by ``/api/choose`` until ``/api/use`` settles it or it expires."""

    reservation_id: str
    provider: str
    key_id: str
    agent: str
    tokens: int
    at: float
    expires_at: float


class Holds:
    """The reservations ``choose`` handed out, findable by id, key or provider (oldest first)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Hold] = {}
        self._expiry: list[tuple[float, str]] = []

    def add(self, hold: Hold) -> None:
        self._by_id[hold.reservation_id] = hold
        heapq.heappush(self._expiry, (hold.expires_at, hold.reservation_id))

    def sweep(self, now: float) -> None:
        """Forget expired holds (the counter store released their reservations itself)."""
        while self._expiry and self._expiry[0][0] <= now:
            _, rid = heapq.heappop(self._expiry)
            self._by_id.pop(rid, None)

    def find(
        self,
        now: float,
        *,
        reservation_id: str | None = None,
        key_id: str | None = None,
        provider: str | None = None,
        agent: str | None = None,
    ) -> Hold | None:
        """The hold by id, else the oldest matching key, provider and agent; kept held."""
        self.sweep(now)
        if reservation_id is not None:
            return self._by_id.get(reservation_id)
        for h in sorted(self._by_id.values(), key=lambda h: h.at):
            if key_id is not None and h.key_id != key_id:
                continue
            if provider is not None and h.provider != provider:
                continue
            if agent is not None and h.agent != agent:
                continue
            return h
        return None

    def take(
        self,
        now: float,
        *,
        reservation_id: str | None = None,
        key_id: str | None = None,
        provider: str | None = None,
        agent: str | None = None,
    ) -> Hold | None:
        """Like :meth:`find`, and no longer held."""
        hold = self.find(
            now, reservation_id=reservation_id, key_id=key_id, provider=provider, agent=agent
        )
        if hold is not None:
            self._by_id.pop(hold.reservation_id, None)
        return hold

    def drop_key(self, key_id: str) -> list[Hold]:
        """Forget the holds on a removed key; returns them (their reservations to release)."""
        dropped = [h for h in self._by_id.values() if h.key_id == key_id]
        for h in dropped:
            del self._by_id[h.reservation_id]
        return dropped

    def __len__(self) -> int:
        return len(self._by_id)
