"""Prometheus metrics through ``prometheus_client``: the families and their exposition.

Labels stay bounded: door, route, provider, key id, model, status class and error kind all
come from the configuration or from closed sets; never a request id, an agent's free-form
name or a secret. Per-request cost is kept small: a request only adds to plain dictionaries
and bucket lists; the counters are handed to ``prometheus_client`` in bulk (:meth:`Metrics.flush`,
at every scrape and at most a second after a request), and the histograms are exposed by a
collector over the bucket lists (real ``Histogram`` objects in multi-process mode, whose values
must live in ``prometheus_client``'s files).

Replicas sharing a host set ``PROMETHEUS_MULTIPROC_DIR`` (``prometheus_client``'s own
multi-process mode): each process writes its values there and ``/metrics`` sums them.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

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


class Buckets(Collector):
    """A histogram family counted in plain lists (one per label set) on the request path."""

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        bounds: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self.bounds = list(bounds)
        # per label set: a count per bound, one past the last bound (+Inf), then the sum
        self.series: dict[tuple[str, ...], list[float]] = {}
        self.real: Histogram | None = None
        if os.environ.get(MULTIPROC_ENV):  # values must live in prometheus_client's files
            self.real = Histogram(name, doc, self.labelnames, buckets=bounds, registry=registry)
        else:
            registry.register(self)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        if self.real is not None:
            self.real.labels(*labels).observe(value)
            return
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labels, series in list(self.series.items()):
            running, cumulative = 0.0, []
            for bound, n in zip([*map(str, self.bounds), "+Inf"], series[:-1], strict=True):
                running += n
                cumulative.append((bound, running))
            family.add_metric(list(labels), cumulative, series[-1])
        yield family


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
        self.overhead = Buckets(
            "quotaflow_gateway_overhead_seconds",
            "Request time spent in the gateway, upstream time excluded",
            ("door",),
            OVERHEAD_BUCKETS,
            r,
        )
        self.upstream = Buckets(
            "quotaflow_upstream_seconds",
            "Upstream attempt duration (to the end of the body or stream)",
            ("provider", "model"),
            UPSTREAM_BUCKETS,
            r,
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
        # Counts since the last flush, by label set: plain integers on the request path.
        self._requests: dict[tuple[str, ...], int] = {}
        self._attempts: dict[tuple[str, ...], int] = {}
        self._use: dict[tuple[str, ...], list[float]] = {}

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
        self._requests[labels] = self._requests.get(labels, 0) + 1

    def attempt(self, provider: str, key: str, model: str, outcome: str, error_kind: str) -> None:
        labels = (provider, key, model, outcome, error_kind)
        self._attempts[labels] = self._attempts.get(labels, 0) + 1

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
        use = self._use.get(labels)
        if use is None:
            use = self._use[labels] = [0.0, 0.0, 0.0, 0.0]
        use[0] += prompt
        use[1] += completion
        use[2] += cached
        use[3] += cost_usd

    def upstream_time(self, provider: str, model: str, seconds: float) -> None:
        self.upstream.observe((provider, model), seconds)

    def overhead_time(self, door: str, seconds: float) -> None:
        self.overhead.observe((door,), seconds)

    def flush(self) -> None:
        """Hand the counts since the last flush to ``prometheus_client``."""
        requests, self._requests = self._requests, {}
        for labels, n in requests.items():
            self.requests.labels(*labels).inc(n)
        attempts, self._attempts = self._attempts, {}
        for labels, n in attempts.items():
            self.attempts.labels(*labels).inc(n)
        use, self._use = self._use, {}
        for labels, (prompt, completion, cached, cost) in use.items():
            for kind, amount in (
                ("prompt", prompt),
                ("completion", completion),
                ("cached", cached),
            ):
                child = self.tokens.labels(*labels, kind)  # created at 0 when unused: shown
                if amount:
                    child.inc(amount)
            self.cost.labels(*labels).inc(cost)

    def set_headroom(self, rows: Iterable[tuple[str, str, float]]) -> None:
        """Replace the headroom gauge with ``(key id or "", limit id, free share)`` rows."""
        self.headroom.clear()
        for key, limit, share in rows:
            self.headroom.labels(key, limit).set(share)

    def render(self) -> bytes:
        """The exposition text: this process's values, or every process's in multi-process mode."""
        self.flush()
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            # prometheus_client leaves this constructor unannotated
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
