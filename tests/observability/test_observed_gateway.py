"""The gateway reports every request to its observer through one path: spans recorded with an
in-memory exporter, metrics and the access record, against an in-process fake provider."""

from __future__ import annotations

import logging
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from quotaflow.fake_provider import running_fake_provider
from quotaflow.fake_provider.faults import Fault
from quotaflow.gateway import CallContext, Gateway
from quotaflow.observability.metrics import Metrics
from quotaflow.observability.observer import Observer
from quotaflow.observability.tracing import Tracing
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import config

SECRETS = ("sk-observed-0001", "sk-observed-0002")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def cfg(base_url: str) -> dict:
    return {
        "settings": {"strategy": "priority", "max_wait_s": 0},
        "providers": [
            {
                "name": "openai",
                "protocol": "openai",
                "base_url": base_url,
                "models": [{"name": "gpt-4o-mini", "input": 0.15, "output": 0.6}],
                "keys": [
                    {"id": "k1", "secret": SECRETS[0], "priority": 0},
                    {"id": "k2", "secret": SECRETS[1], "priority": 1},
                ],
            }
        ],
    }


BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


async def test_a_fallback_makes_one_server_span_and_a_client_span_per_attempt(
    tmp_path: Path, caplog
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = Observer(metrics=Metrics(), tracing=Tracing(provider))
    caplog.set_level(logging.INFO, logger="quotaflow.access")
    async with running_fake_provider(protocol="openai") as fake:
        fake.state.faults.add(Fault("status", key=SECRETS[0], status=429))
        gw = Gateway(
            config(cfg(fake.base_url)), ledger=SqliteLedger(tmp_path / "q.db"), observer=observer
        )
        await gw.start()
        try:
            out = await gw.chat(BODY, CallContext(door="openai", traceparent=TRACEPARENT))
        finally:
            await gw.close()
    assert out.key.id == "k2"
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert format(server.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert server.attributes["quotaflow.request_id"] == out.request_id
    assert server.attributes["quotaflow.attempts"] == 2
    assert [c.attributes["quotaflow.key"] for c in clients] == ["k1", "k2"]
    assert clients[0].status.status_code is StatusCode.ERROR
    assert clients[0].attributes["error.type"] == "rate_limited"
    assert clients[1].attributes["gen_ai.usage.output_tokens"] == out.usage.completion_tokens
    assert all(c.parent.span_id == server.context.span_id for c in clients)
    for s in spans:
        assert not any(secret in str(v) for v in s.attributes.values() for secret in SECRETS)
    (line,) = [r for r in caplog.records if r.name == "quotaflow.access"]
    assert line.fields["attempts"] == 2 and line.fields["key"] == "k2"
    assert line.fields["door"] == "openai" and line.fields["status"] == 200
