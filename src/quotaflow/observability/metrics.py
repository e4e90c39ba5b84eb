"""Prometheus metrics through ``prometheus_client``: the families and their exposition.

Labels stay bounded: door, route, provider, key id, model, status class and error kind all
come from the configuration or from closed sets; never a request id, an agent's free-form
name or a secret. Per-request cost is kept small by caching each label set's child, so a
request costs a few dictionary look-ups and locked increments.

Replicas sharing a host set ``PROMETHEUS_MULTIPROC_DIR`` (``prometheus_client``'s own
multi-process mode): each process writes its values there and ``/metrics`` sums them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# Gateway overhead is sub-millisecond to a few ms; upstream calls take 0.1 s to minutes.
OVERHEAD_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
UPSTREAM_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
WAIT_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUEST_LABELS: Final = ("door", "route", "provider", "key", "model", "status_class", "error_kind")
ATTEMPT_LABELS: Final = ("provider", "key", "model", "outcome", "error_kind")
USE_LABELS: Final = ("provider", "key", "model")


def status_class(status: int) -> str:
    """``2xx`` … ``5xx``."""
    return f"{status // 100}xx"


class Metrics:
    """Every family quotaflow exports, on one registry (a private one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "quotaflow_requests", "Requests answered, by outcome", REQUEST_LABELS, registry=r
        )
        self.attempts = Counter(
            "quotaflow_attempts", "Upstream attempts made", ATTEMPT_LABELS, registry=r
        )
        self.tokens = Counter(
            "quotaflow_tokens", "Tokens billed", (*USE_LABELS, "type"), registry=r
        )
        self.cost = Counter("quotaflow_cost_usd", "Cost billed in USD", USE_LABELS, registry=r)
        self.refusals = Counter(
            "quotaflow_refusals",
            "Requests refused before any attempt (no key had headroom)",
            ("route",),
            registry=r,
        )
        self.reservation_wait = Histogram(
            "quotaflow_reservation_wait_seconds",
            "Time a request waited for a window to free headroom",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "quotaflow_gateway_overhead_seconds",
            "Request time spent in the gateway, upstream time excluded",
            ("door",),
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.upstream = Histogram(
            "quotaflow_upstream_seconds",
            "Upstream attempt duration (to the end of the body or stream)",
            ("provider", "model"),
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.streams = Gauge(
            "quotaflow_streams_in_flight",
            "Streamed answers being relayed now",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.headroom = Gauge(
            "quotaflow_headroom_ratio",
            "Share of a limit's window still free (1 = unused, 0 = full)",
            ("key", "limit"),
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.ledger_queue = Gauge(
            "quotaflow_ledger_queue_depth",
            "Ledger writes waiting for their commit",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ledger_commit = Histogram(
            "quotaflow_ledger_commit_seconds",
            "Time of one ledger commit",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self._requests: dict[tuple[str, ...], Counter] = {}
        self._attempts: dict[tuple[str, ...], Counter] = {}
        self._use: dict[tuple[str, ...], tuple[Counter, Counter, Counter, Counter]] = {}
        self._upstream: dict[tuple[str, str], Histogram] = {}
        self._overhead: dict[str, Histogram] = {}

    def request(
        self,
        door: str,
        route: str,
        provider: str,
        key: str,
        model: str,
        status: int,
        error_kind: str,
    ) -> None:
        labels = (door, route, provider, key, model, status_class(status), error_kind)
        child = self._requests.get(labels)
        if child is None:
            child = self._requests[labels] = self.requests.labels(*labels)
        child.inc()

    def attempt(self, provider: str, key: str, model: str, outcome: str, error_kind: str) -> None:
        labels = (provider, key, model, outcome, error_kind)
        child = self._attempts.get(labels)
        if child is None:
            child = self._attempts[labels] = self.attempts.labels(*labels)
        child.inc()

    def use(
        self,
        provider: str,
        key: str,
        model: str,
        prompt: int,
        completion: int,
        cached: int,
        cost_usd: float,
    ) -> None:
        labels = (provider, key, model)
        children = self._use.get(labels)
        if children is None:
            children = self._use[labels] = (
                self.tokens.labels(*labels, "prompt"),
                self.tokens.labels(*labels, "completion"),
                self.tokens.labels(*labels, "cached"),
                self.cost.labels(*labels),
            )
        if prompt:
            children[0].inc(prompt)
        if completion:
            children[1].inc(completion)
        if cached:
            children[2].inc(cached)
        if cost_usd:
            children[3].inc(cost_usd)

    def upstream_time(self, provider: str, model: str, seconds: float) -> None:
        self._upstream_child(provider, model).observe(seconds)

    def _upstream_child(self, provider: str, model: str) -> Histogram:
        child = self._upstream.get((provider, model))
        if child is None:
            child = self._upstream[(provider, model)] = self.upstream.labels(provider, model)
        return child

    def overhead_time(self, door: str, seconds: float) -> None:
        child = self._overhead.get(door)
        if child is None:
            child = self._overhead[door] = self.overhead.labels(door)
        child.observe(seconds)

    def set_headroom(self, rows: Iterable[tuple[str, str, float]]) -> None:
        """Replace the headroom gauge with ``(key id or "", limit id, free share)`` rows."""
        self.headroom.clear()
        for key, limit, share in rows:
            self.headroom.labels(key, limit).set(share)

    def render(self) -> bytes:
        """The exposition text: this process's values, or every process's in multi-process mode."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            # prometheus_client leaves this constructor unannotated
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
