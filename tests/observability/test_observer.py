import logging
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from quotaflow.clock import FrozenClock
from quotaflow.engine.pricing import COST_ESTIMATED
from quotaflow.observability.metrics import Metrics
from quotaflow.observability.observer import Observer, tracing_wanted
from quotaflow.observability.tracing import Tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class Row:  # the fields of a ledger row the observer reads
    provider: str = "openai"
    key_id: str = "main"
    model: str = "gpt-4o-mini"
    status: str = "ok"
    error_kind: str | None = None
    http_status: int | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 2
    cost_usd: float = 0.25
    latency_ms: float | None = 120.0
    ttfb_ms: float | None = None
    detail: str | None = None


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, Tracing(provider)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_fallback_counts_both_attempts_and_one_request():
    clock = FrozenClock()
    obs = Observer(metrics=Metrics(), clock=clock)
    req = obs.begin("openai", "default", "auto")
    obs.attempt(
        req,
        Row(
            key_id="a",
            status="error",
            error_kind="rate_limited",
            http_status=429,
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            cost_usd=0.0,
        ),
    )
    obs.attempt(req, Row(key_id="b"))
    clock.advance(0.2)
    obs.finish(req, 200)
    got = samples(obs.metrics)
    base = (("model", "gpt-4o-mini"), ("provider", "openai"))
    assert (
        got[
            (
                "quotaflow_attempts_total",
                (
                    ("error_kind", "rate_limited"),
                    ("key", "a"),
                    ("model", "gpt-4o-mini"),
                    ("outcome", "error"),
                    ("provider", "openai"),
                ),
            )
        ]
        == 1
    )
    assert got[("quotaflow_tokens_total", (("key", "b"), *base, ("type", "prompt")))] == 10
    assert got[("quotaflow_tokens_total", (("key", "b"), *base, ("type", "cached")))] == 2
    assert got[("quotaflow_cost_usd_total", (("key", "b"), *base))] == 0.25
    assert (
        got[
            (
                "quotaflow_requests_total",
                (
                    ("door", "openai"),
                    ("error_kind", ""),
                    ("key", "b"),
                    *base[:1],
                    ("provider", "openai"),
                    ("route", "auto"),
                    ("status_class", "2xx"),
                ),
            )
        ]
        == 1
    )
    # 0.2 s in all, 0.24 s of it upstream: the overhead is clamped at 0, in the lowest bucket
    assert (
        got[("quotaflow_gateway_overhead_seconds_bucket", (("door", "openai"), ("le", "0.0005")))]
        == 1
    )


def test_a_refusal_is_counted_kept_for_the_dashboard_and_logged(caplog):
    obs = Observer(metrics=Metrics(), clock=FrozenClock())
    caplog.set_level(logging.INFO, logger="quotaflow.access")
    req = obs.begin("openai", "team-a", "auto")
    req.request_id = "qf-1"
    obs.finish(req, 429, "quota_exhausted", "Every key is out of headroom")
    assert samples(obs.metrics)[("quotaflow_refusals_total", (("route", "auto"),))] == 1
    assert obs.recent[-1]["status"] == "refused" and obs.recent[-1]["http_status"] == 429
    (line,) = [r for r in caplog.records if r.name == "quotaflow.access"]
    assert line.fields["status"] == 429 and line.fields["attempts"] == 0
    assert line.fields["agent"] == "team-a" and line.fields["request_id"] == "qf-1"


def test_spans_one_server_span_one_client_span_per_attempt(spans):
    exporter, tracing = spans
    clock = FrozenClock()
    obs = Observer(tracing=tracing, clock=clock)
    req = obs.begin("openai", "default", "auto", traceparent=TRACEPARENT)
    req.request_id = "qf-7"
    obs.attempt(req, Row(key_id="a", status="error", error_kind="server_error", http_status=500))
    obs.attempt(req, Row(key_id="b"))
    obs.finish(req, 200)
    done = exporter.get_finished_spans()
    server = [s for s in done if s.kind is SpanKind.SERVER]
    clients = [s for s in done if s.kind is SpanKind.CLIENT]
    assert len(server) == 1 and len(clients) == 2
    (srv,) = server
    assert format(srv.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(srv.parent.span_id, "016x") == "b7ad6b7169203331"
    assert srv.attributes["quotaflow.request_id"] == "qf-7"
    assert all(c.parent.span_id == srv.context.span_id for c in clients)
    failed, ok = clients
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "server_error"
    assert ok.attributes["gen_ai.system"] == "openai"
    assert ok.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 10
    assert ok.attributes["gen_ai.usage.output_tokens"] == 5
    assert ok.attributes["quotaflow.key"] == "b" and ok.attributes["quotaflow.outcome"] == "ok"


def test_tracing_is_wanted_only_when_an_exporter_is_configured(monkeypatch):
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    assert not tracing_wanted()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing_wanted()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing_wanted()


def test_warnings_name_the_key_cooling_the_unpriced_model_and_the_refusal(caplog):
    obs = Observer(clock=FrozenClock())
    caplog.set_level(logging.WARNING, logger="quotaflow.events")
    for _ in range(3):
        req = obs.begin("openai", "default", "auto")
        obs.attempt(req, Row(key_id="a", status="error", error_kind="rate_limited", cost_usd=0.0))
        obs.key_cooling("openai", "a", 2.0)  # what the booking says of a rate-limited key
        # booked at the highest price of its provider: a cost above 0, flagged as estimated
        obs.attempt(req, Row(key_id="b", cost_usd=0.04, detail=f"{COST_ESTIMATED} (highest)"))
        free = obs.begin("openai", "default", "auto")
        obs.attempt(free, Row(model="free-model", cost_usd=0.0))  # a $0 price is a price
        obs.finish(free, 200)
        obs.finish(req, 200)
        refused = obs.begin("openai", "default", "auto")
        obs.finish(refused, 429, "quota_exhausted")
    events = [r.fields["event"] for r in caplog.records]
    # each once: repeats within the minute are held back and counted
    assert sorted(events) == ["all_keys_refused", "key_cooling", "unpriced_model"]
    assert all(r.fields.get("hint") for r in caplog.records)
    # what the dashboard lists: each model booked at a stand-in price, once
    assert list(obs.unpriced_models) == [("openai", "gpt-4o-mini")]


def test_histogram_buckets_are_cumulative_and_a_bound_is_inclusive():
    m = Metrics()
    for seconds in (0.001, 0.001, 0.004, 99.0):
        m.overhead_time("openai", seconds)
    got = samples(m)
    bucket = "quotaflow_gateway_overhead_seconds_bucket"
    assert got[(bucket, (("door", "openai"), ("le", "0.0005")))] == 0
    assert got[(bucket, (("door", "openai"), ("le", "0.001")))] == 2
    assert got[(bucket, (("door", "openai"), ("le", "0.005")))] == 3
    assert got[(bucket, (("door", "openai"), ("le", "+Inf")))] == 4
    assert got[("quotaflow_gateway_overhead_seconds_count", (("door", "openai"),))] == 4
    assert got[("quotaflow_gateway_overhead_seconds_sum", (("door", "openai"),))] == 99.006


def test_unpriced_models_stay_bounded_whatever_callers_send() -> None:
    from quotaflow.observability.observer import UNPRICED_MAX

    obs = Observer()
    for i in range(UNPRICED_MAX * 3):
        obs.unpriced("openai", f"made-up-{i}", "charged at the provider's highest price")
    assert len(obs.unpriced_models) == UNPRICED_MAX
    assert ("openai", f"made-up-{UNPRICED_MAX * 3 - 1}") in obs.unpriced_models  # newest kept
