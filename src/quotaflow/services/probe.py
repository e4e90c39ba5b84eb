"""The key tester (seed 004's ``apiKeyTester``): every key × every model of its provider.

Each test sends one tiny chat request straight to the key (no routing, no fallback) through
the gateway's one attempt (:func:`quotaflow.gateway.attempts.exchange`), with a bounded
number in flight, and books the outcome through the one booking path
(:meth:`quotaflow.gateway.booking.Booking.probed`): the key's health (a dead key is disabled, an
empty one depleted, so routing skips them), its key × model statistics, and a ledger row
(``source='probe'``) whose tokens count like any other use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from quotaflow.engine.catalog import Key
from quotaflow.gateway import Gateway as Engine
from quotaflow.gateway.attempts import Call, exchange

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
            fastest = {
                "provider": f.provider,
                "key_id": f.key_id,
                "model": f.model,
                "latency_ms": round(f.latency_ms, 1),
            }
        return {
            "total": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "pass_rate": self.pass_rate,
            "fastest": fastest,
        }


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
    """Test one key × model through the gateway's one attempt, and book the outcome."""
    key, model = target.key, target.model
    provider = engine.config.providers[key.provider]
    body = {"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}]}
    call = Call(provider, key, model, body, PROBE_MAX_TOKENS)
    health = engine.keyring.health_of(key.id)
    ex = await exchange(engine.http, engine.clock, engine.booking.mask, call, timeout_s, health)
    if ex.error is not None:
        raise ex.error
    failure = ex.failure  # masked by the booking: providers echo the key in auth errors
    usage = ex.answer.usage if ex.answer is not None else None
    await engine.booking.probed(key, model, ex.latency_ms, failure, usage)
    return ProbeResult(
        key.provider,
        key.id,
        key.masked,
        model,
        failure is None,
        ex.latency_ms,
        None if failure is None else failure.status,
        None if failure is None else failure.kind.value,
        None if failure is None else failure.message[:300],
        usage.total_tokens if usage else 0,
    )


async def probe_all(
    engine: Engine,
    todo: list[ProbeTarget],
    *,
    timeout_s: float = 20.0,
    concurrency: int = 8,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
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
