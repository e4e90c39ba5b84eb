"""A store that stops answering, said once per episode: a warning with what to do when it
becomes unreachable, and one line when it answers again — never one per request."""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import urlsplit

EVENTS: Final = logging.getLogger("quotaflow.events")  # where the gateway's events go


class Outage:
    """The reachability of one store (``store`` names it for the operator, no secret)."""

    __slots__ = ("advice", "back", "down", "log", "problem", "store")

    def __init__(
        self,
        store: str,
        advice: str,
        *,
        problem: str = "is unreachable",
        back: str = "is back",
        log: logging.Logger = EVENTS,
    ) -> None:
        self.store = store
        self.advice = advice
        self.problem = problem  # "<store> <problem> (<why>)"
        self.back = back  # "<store> <back>"
        self.log = log
        self.down = False

    def failed(self, why: object) -> bool:
        """The store did not answer; True when this starts an episode (and was logged)."""
        if self.down:
            return False
        self.down = True
        fields = {"event": "store_unreachable", "subject": self.store, "hint": self.advice}
        self.log.warning("%s %s (%s)", self.store, self.problem, why, extra={"fields": fields})
        return True

    def answered(self) -> bool:
        """The store answered; True when this ends an episode (and was logged)."""
        if not self.down:
            return False
        self.down = False
        fields = {"event": "store_back", "subject": self.store}
        self.log.warning("%s %s", self.store, self.back, extra={"fields": fields})
        return True


def where(url: str) -> str:
    """``url`` without its credentials, to name a store in a log line."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "its configured address"
    return f"{host}{port}{parts.path}" if host else parts.scheme or "its configured address"
