"""The key tester (seed 004's ``apiKeyTester``): every key × every model of its provider.

Each test sends one tiny chat request straight to the key (no routing, no fallback), with a
bounded number in flight, and books the outcome through
:meth:`quotaflow.gateway.Gateway.record_probe`: the key's health (a dead key is disabled, an
empty one depleted, so routing skips them), its key × model statistics, and a ledger row
(``source='probe'``) whose tokens count like any other use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import CallTarget, MalformedResponse, UpstreamFailure
from quotaflow.engine.catalog import Key
from quotaflow.gateway import Gateway as Engine
from quotaflow.types import ErrorKind, Usage
from quotaflow.upstream import TRANSPORT_ERRORS, send, transport_failure

PROBE_PROMPT = "Reply with the single word OK."
PROBE_MAX_TOKENS = 8


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    key: Key
    model: str


@dataclass(frozen=True, slots=True)
class ProbeResult:
    provider: str
    key_id: str
    key: str  # masked secret
    model: str
    ok: bool
    latency_ms: float
    http_status: int | None = None
    error_kind: str | None = None
    error: str | None = None
    tokens: int = 0

    @property
    def status(self) -> str:
        return "passed" if self.ok else "failed"


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    total: int
    passed: int
    failed: int
    pass_rate: float  # 0 … 100
    fastest: ProbeResult | None

    def to_dict(self) -> dict[str, Any]:
        fastest = None
        if self.fastest is not None:
            f = self.fastest
            fastest = {"provider": f.provider, "key_id": f.key_id, "model": f.model, "latency_ms": round(f.latency_ms, 1)}  # fmt: skip
        return {"total": self.total, "passed": self.passed, "failed": self.failed, "pass_rate": self.pass_rate, "fastest": fastest}  # fmt: skip


def targets(
    engine: Engine, providers: Iterable[str] = (), models: Iterable[str] = ()
) -> list[ProbeTarget]:
    """Every key × model of the chosen providers (all by default), models filtered by name.

    Raises ``ValueError`` naming an unknown provider or a model no chosen provider serves.
    """
    wanted = list(providers) or sorted(engine.config.providers)
    unknown = [p for p in wanted if p not in engine.config.providers]
    if unknown:
        known = ", ".join(sorted(engine.config.providers)) or "none"
        raise ValueError(f"unknown provider(s) {', '.join(unknown)} (configured: {known})")
    only = set(models)
    served = {m for p in wanted for m in engine.config.providers[p].models}
    missing = sorted(only - served)
    if missing:
        raise ValueError(f"no chosen provider serves model(s) {', '.join(missing)}")
    out = []
    for p in wanted:
        for key in sorted(engine.provider_keys(p), key=lambda k: k.id):
            for m in engine.config.providers[p].models:
                if not only or m in only:
                    out.append(ProbeTarget(key, m))
    return out


async def probe_one(engine: Engine, target: ProbeTarget, timeout_s: float) -> ProbeResult:
    """Test one key × model and book the outcome."""
    key, model = target.key, target.model
    provider = engine.config.providers[key.provider]
    adapter = adapter_for(provider.protocol)
    body = {"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}]}
    call = adapter.build_request(
        body, CallTarget(provider.base_url, model, key.secret, provider.headers),
        max_tokens=PROBE_MAX_TOKENS, stream=False,
    )  # fmt: skip
    t0 = engine.clock.monotonic()
    usage: Usage | None = None
    failure: UpstreamFailure | None = None
    try:
        raw = await send(engine.http, call, timeout_s)
    except TRANSPORT_ERRORS as exc:
        failure = transport_failure(exc, timeout_s)
    else:
        if raw.status >= 300:
            failure = adapter.classify_error(raw.status, raw.headers, raw.body)
        else:
            try:
                usage = adapter.parse_response(raw.status, raw.headers, raw.body, model).usage
            except MalformedResponse as exc:
                failure = UpstreamFailure(ErrorKind.MALFORMED, raw.status, str(exc))
    latency_ms = (engine.clock.monotonic() - t0) * 1000.0
    if failure is not None and key.secret in failure.message:
        # providers echo the key in auth errors: never store or print it whole
        failure.message = failure.message.replace(key.secret, key.masked)
    ok = failure is None
    await engine.record_probe(key.id, model, ok, latency_ms, failure, usage)
    return ProbeResult(
        key.provider, key.id, key.masked, model, ok, latency_ms,
        None if failure is None else failure.status,
        None if failure is None else failure.kind.value,
        None if failure is None else failure.message[:300],
        usage.total_tokens if usage else 0,
    )  # fmt: skip


async def probe_all(
    engine: Engine, todo: list[ProbeTarget], *, timeout_s: float = 20.0, concurrency: int = 8,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:  # fmt: skip
    """Run every test, at most ``concurrency`` at once; results in ``todo``'s order."""
    gate = asyncio.Semaphore(max(concurrency, 1))

    async def one(t: ProbeTarget) -> ProbeResult:
        async with gate:
            r = await probe_one(engine, t, timeout_s)
        if on_result is not None:
            on_result(r)
        return r

    return list(await asyncio.gather(*(one(t) for t in todo)))


def summarize(results: list[ProbeResult]) -> ProbeSummary:
    passed = [r for r in results if r.ok]
    rate = round(100.0 * len(passed) / len(results), 1) if results else 0.0
    fastest = min(passed, key=lambda r: r.latency_ms) if passed else None
    return ProbeSummary(len(results), len(passed), len(results) - len(passed), rate, fastest)


def results_document(
    results: list[ProbeResult], summary: ProbeSummary, now: float
) -> dict[str, Any]:
    """The JSON results file (seed 004's ``api-test-results.json``)."""
    return {
        "tested_at": now,
        "summary": summary.to_dict(),
        "results": [
            {**asdict(r), "status": r.status, "latency_ms": round(r.latency_ms, 1)} for r in results
        ],
    }
