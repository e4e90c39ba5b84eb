"""OpenTelemetry spans (the ``otel`` extra): a server span per request, a client span per
upstream attempt, with the GenAI semantic-convention attributes.

This module imports the SDK, so it is loaded only when tracing is wanted
(:func:`quotaflow.observability.observer.tracing_from_env`); without the extra nothing of
OpenTelemetry is imported and the gateway's per-request cost is one ``is None`` test.
Spans are recorded with explicit start and end times from the gateway's clock, so they
cost nothing while the attempt runs. Attributes carry names, counts and outcomes: never a
key's secret or prompt text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from quotaflow._version import __version__

Attributes = Mapping[str, str | int | float | bool]


def exporter_from_env() -> SpanExporter:
    """``OTEL_TRACES_EXPORTER=console`` prints spans; anything else sends OTLP over HTTP
    to ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` (the exporter reads its own variables)."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class Tracing:
    """Spans of one gateway on ``provider`` (its own, unless the embedding program gives one)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        if provider is None:
            provider = TracerProvider(
                resource=Resource.create({"service.name": "quotaflow"}),
            )
            provider.add_span_processor(BatchSpanProcessor(exporter_from_env()))
        self.provider = provider
        self.tracer = provider.get_tracer("quotaflow", __version__)

    def server_span(
        self, name: str, start_s: float, traceparent: str | None, attrs: Attributes
    ) -> Span:
        """The request's span, continuing the client's W3C ``traceparent`` when it sent one."""
        ctx = propagate.extract({"traceparent": traceparent}) if traceparent else None
        return self.tracer.start_span(
            name, ctx, SpanKind.SERVER, attributes=attrs, start_time=_ns(start_s)
        )

    def client_span(
        self,
        parent: Span,
        name: str,
        start_s: float,
        end_s: float,
        attrs: Attributes,
        error: str | None,
    ) -> None:
        """One upstream attempt, recorded whole once it is over."""
        span = self.tracer.start_span(
            name,
            trace.set_span_in_context(parent),
            SpanKind.CLIENT,
            attributes=attrs,
            start_time=_ns(start_s),
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(_ns(end_s))

    @staticmethod
    def end(span: Span, end_s: float, attrs: dict[str, Any], error: str | None) -> None:
        span.set_attributes(attrs)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(_ns(end_s))

    def close(self) -> None:
        self.provider.shutdown()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
