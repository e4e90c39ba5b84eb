"""Health of a key (and of each key × model): latency, success, cooldowns and the circuit.

Functions here update a :class:`Health` record from one outcome; the caller passes the time.

Circuit states: ``closed`` (normal) → after ``failure_threshold`` consecutive failures,
``open`` for a cool-down that doubles on each re-open (capped) → ``half_open`` when it
ends, where exactly one probe request is let through: success closes the circuit, failure
opens it again. A 429 with ``Retry-After`` only cools the key down; a 401/403 disables it
until an operator enables it again; an exhausted quota marks it depleted until its window
resets.
"""

from __future__ import annotations

from dataclasses import dataclass

from quotaflow.engine.durations import human_duration
from quotaflow.types import ErrorKind, RateInfo

# A key the provider rejected (401/403, Gemini's API_KEY_INVALID) is "invalid": kept in
# ``disabled_reason`` with this prefix, so replicas share it like an operator's disable.
INVALID_PREFIX = "invalid: "

EWMA_ALPHA = 0.2
MAX_COOLDOWN_S = 300.0


@dataclass(slots=True)
class Health:
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    latency_ewma_ms: float | None = None
    ttfb_ewma_ms: float | None = None
    last_success: float | None = None
    last_error: float | None = None
    last_error_kind: str | None = None
    last_error_message: str | None = None
    cooldown_until: float = 0.0
    cooldown_reason: str | None = None
    circuit: str = "closed"  # closed | open | half_open
    open_count: int = 0
    probe_in_flight: bool = False
    disabled_reason: str | None = None  # set on auth failures; cleared by an operator
    depleted_until: float | None = None  # provider said the quota is gone until then
    rate: RateInfo | None = None
    rate_seen_at: float | None = None

    @property
    def success_rate(self) -> float:
        n = self.successes + self.failures
        return self.successes / n if n else 1.0


def _ewma(old: float | None, x: float) -> float:
    return x if old is None else old + EWMA_ALPHA * (x - old)


def record_success(h: Health, latency_ms: float, now: float, ttfb_ms: float | None = None) -> None:
    h.successes += 1
    h.consecutive_failures = 0
    h.latency_ewma_ms = _ewma(h.latency_ewma_ms, latency_ms)
    if ttfb_ms is not None:
        h.ttfb_ewma_ms = _ewma(h.ttfb_ewma_ms, ttfb_ms)
    h.last_success = now
    h.circuit = "closed"
    h.open_count = 0
    h.probe_in_flight = False


def record_failure(
    h: Health,
    kind: ErrorKind,
    message: str,
    now: float,
    *,
    retry_after_s: float | None = None,
    depleted_until: float | None = None,
    cooldown_s: float = 30.0,
    failure_threshold: int = 3,
) -> None:
    """Book one failed attempt and move the key's state accordingly."""
    h.last_error = now
    h.last_error_kind = kind.value
    h.last_error_message = message[:300]
    h.probe_in_flight = False
    if kind in (
        ErrorKind.BAD_REQUEST,
        ErrorKind.CONTEXT_TOO_LONG,
        ErrorKind.CONTENT_FILTERED,
        ErrorKind.NOT_FOUND,
        ErrorKind.UNSUPPORTED,
    ):
        return  # the request's fault, not the key's
    h.failures += 1
    h.consecutive_failures += 1
    if kind is ErrorKind.AUTH:
        h.disabled_reason = INVALID_PREFIX + message[:200]
        return
    if kind is ErrorKind.QUOTA_EXHAUSTED:
        h.depleted_until = depleted_until if depleted_until is not None else now + 3600.0
        return
    if kind is ErrorKind.RATE_LIMITED:
        wait = retry_after_s if retry_after_s is not None else 1.0
        _cool(h, now + wait, f"rate limited by the provider (retry after {human_duration(wait)})")
        return
    # An open circuit is not re-opened by requests sent before it opened: only a failed
    # half-open probe (or a new burst after it closed) doubles the cool-down.
    if h.circuit == "half_open" or (
        h.circuit == "closed" and h.consecutive_failures >= failure_threshold
    ):
        h.open_count += 1
        span = min(cooldown_s * 2 ** (h.open_count - 1), MAX_COOLDOWN_S)
        h.circuit = "open"
        _cool(h, now + span, f"circuit open after {h.consecutive_failures} failures ({kind.value})")
    if retry_after_s is not None:
        _cool(h, now + retry_after_s, f"{kind.value}: retry after {human_duration(retry_after_s)}")


def _cool(h: Health, until: float, reason: str) -> None:
    if until > h.cooldown_until:
        h.cooldown_until = until
        h.cooldown_reason = reason


def record_rate_info(h: Health, info: RateInfo, now: float) -> None:
    h.rate = info
    h.rate_seen_at = now


def unavailable_reason(h: Health, now: float) -> str | None:
    """Why the key can't take a request now, or ``None`` if it can."""
    if h.disabled_reason:
        return h.disabled_reason if is_invalid(h) else f"disabled ({h.disabled_reason})"
    if h.depleted_until is not None:
        if now < h.depleted_until:
            return "quota exhausted at the provider"
        h.depleted_until = None
    if now < h.cooldown_until:
        return f"cooling down: {h.cooldown_reason}"
    if h.circuit == "open":
        h.circuit = "half_open"
    if h.circuit == "half_open" and h.probe_in_flight:
        return "circuit half-open: a probe request is in flight"
    if h.rate is not None and h.rate_seen_at is not None:
        r = h.rate
        if (
            r.requests_remaining == 0
            and r.requests_reset_s
            and now < h.rate_seen_at + r.requests_reset_s
        ):
            return "provider reports no requests left in its window"
        if r.tokens_remaining == 0 and r.tokens_reset_s and now < h.rate_seen_at + r.tokens_reset_s:
            return "provider reports no tokens left in its window"
    return None


def is_invalid(h: Health) -> bool:
    """Whether the provider rejected the key (until an operator enables it again)."""
    return bool(h.disabled_reason and h.disabled_reason.startswith(INVALID_PREFIX))


def learned_used_share(h: Health, now: float) -> float:
    """The largest used share of the rate limits the provider announced in its headers
    (requests or tokens), while their window lasts; 0 when none is known."""
    r, seen = h.rate, h.rate_seen_at
    if r is None or seen is None:
        return 0.0
    share = 0.0
    for limit, remaining, reset_s in (
        (r.requests_limit, r.requests_remaining, r.requests_reset_s),
        (r.tokens_limit, r.tokens_remaining, r.tokens_reset_s),
    ):
        if not limit or remaining is None or (reset_s is not None and now >= seen + reset_s):
            continue
        share = max(share, 1.0 - remaining / limit)
    return share


def available_at(h: Health, now: float) -> float | None:
    """When a key unavailable for temporary reasons becomes available again: when the last
    of them (cool-down, provider-side depletion, exhausted rate headers) ends."""
    if h.disabled_reason:
        return None
    times = [h.cooldown_until, h.depleted_until or 0.0]
    if h.rate is not None and h.rate_seen_at is not None:
        r = h.rate
        if r.requests_remaining == 0 and r.requests_reset_s:
            times.append(h.rate_seen_at + r.requests_reset_s)
        if r.tokens_remaining == 0 and r.tokens_reset_s:
            times.append(h.rate_seen_at + r.tokens_reset_s)
    active = [t for t in times if t > now]
    return max(active) if active else None


def enable(h: Health) -> None:
    """An operator's enable: clear every block (disabled, depleted, cool-down, open circuit)."""
    h.disabled_reason = None
    h.depleted_until = None
    h.cooldown_until = 0.0
    h.circuit = "closed"
    h.consecutive_failures = 0


def begin_attempt(h: Health) -> None:
    if h.circuit == "half_open":
        h.probe_in_flight = True
