"""What ``quotaflow demo`` shows: one row per key with one state, the traffic, and the
sentence it ends with.

A key's state is the first of: disabled, cooling down, out of quota (until its window
resets), then the worst of its limits (critical, warning, available), so the table never says
"depleted" and "available" for the same key at once.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text

from quotaflow.engine.catalog import Key
from quotaflow.engine.health import Health
from quotaflow.engine.limits import LimitUsage
from quotaflow.gateway import Gateway

# How far back the closing sentence's "lately" looks.
RECENT_S = 30.0


@dataclass
class Traffic:
    """Every request the demo's agents sent: when, and which provider answered (None: refused)."""

    answered: Counter[str] = field(default_factory=Counter)  # by provider
    refused: int = 0
    events: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    outcomes: deque[tuple[float, str | None]] = field(default_factory=lambda: deque(maxlen=200_000))
    last_key: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return sum(self.answered.values()) + self.refused

    def record(self, provider: str | None, key: str | None) -> None:
        self.outcomes.append((time.monotonic(), provider))
        if provider is None:
            self.refused += 1
            return
        self.answered[provider] += 1
        if self.last_key and key != self.last_key:
            self.events.appendleft(f"switched {self.last_key} → {key}")
        self.last_key = key

    def recent(self, span_s: float = RECENT_S) -> list[str | None]:
        """Who answered each request of the last ``span_s`` seconds (None: refused)."""
        since = time.monotonic() - span_s
        return [p for t, p in self.outcomes if t >= since]


def seconds(s: float) -> str:
    """A duration in words: '8 s', '2 min 5 s', '1 h 4 min'."""
    s = max(round(s), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min {r} s" if r else f"{m} min"
    h, r = divmod(s, 3600)
    return f"{h} h {r // 60} min" if r >= 60 else f"{h} h"


STYLE = {
    "disabled": "red",
    "cooling down": "dark_orange",
    "out of quota": "grey50",
    "critical": "red",
    "warning": "dark_orange",
    "available": "green",
}


def key_state(health: Health, usages: list[LimitUsage], now: float) -> tuple[str, str]:
    """(state, detail) of one key: the one thing that decides whether it can take a request."""
    if health.disabled_reason:
        return "disabled", health.disabled_reason
    if now < health.cooldown_until:
        why = health.cooldown_reason or "after failures"
        return "cooling down", f"for {seconds(health.cooldown_until - now)}: {why}"
    if health.depleted_until is not None and now < health.depleted_until:
        return (
            "out of quota",
            f"the provider says so; back in {seconds(health.depleted_until - now)}",
        )
    full = [u for u in usages if u.used_share >= 1.0]
    if full:
        resets = [u.resets_at for u in full if u.resets_at is not None]
        when = f"resets in {seconds(max(resets) - now)}" if len(resets) == len(full) else "no reset"
        return "out of quota", f"{full[0].limit.metric}/{full[0].limit.window} used up; {when}"
    worst = max(usages, key=lambda u: u.used_share, default=None)
    if worst is None:
        return "available", "no limit"
    state = worst.state.value
    label = {"ok": "available", "warning": "warning", "critical": "critical"}.get(state, state)
    return label, f"{worst.used_share:.0%} of its {worst.limit.metric}/{worst.limit.window} used"


def _bar(share: float, width: int = 16) -> str:
    filled = min(round(share * width), width)
    return "█" * filled + "░" * (width - filled)


def _limit_line(u: LimitUsage, now: float) -> str:
    reset = "" if u.resets_at is None else f", resets in {seconds(u.resets_at - now)}"
    return (
        f"{_bar(min(u.used_share, 1.0))} {u.taken:,.0f} / {u.limit.amount:,.0f} "
        f"{u.limit.metric} per {u.limit.window}{reset}"
    )


async def render(gw: Gateway, traffic: Traffic, url: str) -> Group:
    now = gw.clock.now()
    table = Table(title=f"quotaflow demo — gateway at {url}/v1 (Ctrl-C to stop)", expand=True)
    for col in ("key", "state", "quotas", "answered"):
        table.add_column(col)
    key: Key
    for key in gw.keys.values():
        snapshot = await gw.counters.snapshot(key.limits, now)
        usages = [snapshot[lim.id] for lim in key.limits]
        state, detail = key_state(gw.health[key.id], usages, now)
        table.add_row(
            f"{key.label}\n{key.provider}",
            Text(state, style=STYLE[state]) + Text(f"\n{detail}", style="dim"),
            "\n".join(_limit_line(u, now) for u in usages),
            str(traffic.answered[key.provider]),
        )
    events = Text.from_markup("\n".join(traffic.events) or "waiting for traffic…")
    summary = Text(
        f"requests: {traffic.total}   answered: {sum(traffic.answered.values())}   "
        f"refused: {traffic.refused}"
    )
    return Group(table, summary, events)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def closing_sentence(traffic: Traffic, agents: int) -> str:
    """What the demo did, in words: printed when it ends."""
    elapsed = time.monotonic() - traffic.started
    answered = sum(traffic.answered.values())
    plural = "agent" if agents == 1 else "agents"
    text = (
        f"The demo ran {seconds(elapsed)}: {agents} {plural} sent {traffic.total} requests; "
        f"{answered} were answered ({_share(answered, traffic.total)}) and {traffic.refused} "
        "refused."
    )
    if traffic.answered:
        by = [f"{p} ({n})" for p, n in traffic.answered.most_common()]
        text += f" Answers came from {_and(by)}."
    recent = traffic.recent()
    if elapsed > 2 * RECENT_S and recent:
        ok = [p for p in recent if p is not None]
        providers = sorted(set(ok), key=lambda p: list(traffic.answered).index(p))
        text += (
            f" In the last {seconds(RECENT_S)}, {len(ok)} of {len(recent)} were answered "
            f"({_share(len(ok), len(recent))})" + (f", by {_and(providers)}." if providers else ".")
        )
    return text
