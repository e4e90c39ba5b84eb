"""The learning router, simulated: seed 004's "Groq starts failing on day 2, by day 3 the
system prefers Gemini" — in requests and seconds, not days.

The real :class:`quotaflow.gateway.Gateway` (SQLite ledger in a temp folder, a
:class:`FrozenClock`, a seeded ``random.Random``) routes requests to two in-process fake
providers speaking their real wire formats: ``groq`` (OpenAI protocol) and ``gemini``
(Gemini protocol). A scenario sets each provider's error rate and latency per phase; when a
request leaves for a provider, the simulation advances the clock by that provider's latency
and, with its error rate, queues a 503 on that provider (the fake provider's own fault
mechanism), so every outcome goes through the real adapters, ledger and statistics.

"Share of traffic" is where the router sends a request *first* (the ledger's attempt 1):
fallback attempts after a failure are not counted as the router's choice.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from quotaflow.fake_provider import running_fake_provider
from quotaflow.fake_provider.faults import Fault
from quotaflow.fake_provider.server import FakeProviderHandle
from quotaflow.gateway import CallContext, Gateway
from quotaflow.gateway.upstream import make_client
from quotaflow.services.probe import probe_all, targets
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock, config

A, B = "groq", "gemini"
MODELS = {A: "llama-3.3-70b-versatile", B: "gemini-2.0-flash"}


@dataclass
class Behaviour:
    error_rate: float = 0.0
    latency_ms: float = 300.0


class Simulation:
    """Two fake providers whose behaviour the test changes between phases."""

    def __init__(self, fakes: dict[str, FakeProviderHandle], clock: FrozenClock, seed: int):
        self.fakes = fakes
        self.clock = clock
        self.rng = random.Random(seed)  # the providers' dice, apart from the router's
        self.behaviour = {name: Behaviour() for name in fakes}
        self._by_port = {f.port: name for name, f in fakes.items()}

    def on_request(self, url: str) -> None:
        """Called by the gateway's HTTP client before each upstream call."""
        name = self._by_port[urlsplit(url).port]
        b = self.behaviour[name]
        self.clock.advance(b.latency_ms / 1000.0)
        if self.rng.random() < b.error_rate:
            self.fakes[name].state.faults.add(Fault("status", status=503))


def sim_config(
    fakes: dict[str, FakeProviderHandle], strategy: str, a_limits: list[dict[str, Any]]
) -> Any:
    return config({
        "providers": [
            {"name": A, "protocol": "openai", "base_url": fakes[A].base_url,
             "models": [MODELS[A]],
             "keys": [{"id": "groq-1", "secret": "gsk-sim-0001", "limits": a_limits}]},
            {"name": B, "protocol": "gemini", "base_url": fakes[B].url + "/v1beta",
             "models": [MODELS[B]], "keys": [{"id": "gemini-1", "secret": "AIza-sim-0001"}]},
        ],
        "routes": [{"name": "smart", "strategy": strategy, "deployments": [
            {"provider": A, "model": MODELS[A]}, {"provider": B, "model": MODELS[B]},
        ]}],
        "settings": {"max_wait_s": 0},
    })  # fmt: skip


@asynccontextmanager
async def simulated(
    tmp_path: Path, strategy: str, seed: int = 7, a_limits: list[dict[str, Any]] | None = None
) -> AsyncIterator[tuple[Gateway, Simulation]]:
    async with (
        running_fake_provider(protocol="openai") as fa,
        running_fake_provider(protocol="gemini") as fb,
    ):
        fakes = {A: fa, B: fb}
        clock = FrozenClock()
        sim = Simulation(fakes, clock, seed)
        http = make_client(5.0, on_request=sim.on_request)
        gw = Gateway(
            sim_config(fakes, strategy, a_limits or []),
            ledger=SqliteLedger(tmp_path / "quotaflow.db", synchronous="OFF"),
            clock=clock, rng=random.Random(seed), http=http,
        )  # fmt: skip
        await gw.start()
        try:
            yield gw, sim
            assert gw.session_summary()["failures"] == 0  # every request was answered
        finally:
            await gw.close()
            await http.close()


BODY = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


async def run(gw: Gateway, n: int, *, think_s: float = 0.5) -> list[str]:
    """Send ``n`` requests one after another (``think_s`` apart); the provider each was sent
    to first. Every request is answered (a failed first attempt falls back)."""
    firsts = []
    for _ in range(n):
        out = await gw.chat(BODY)
        firsts.append(out.attempts[0].provider)
        gw.clock.advance(think_s)  # type: ignore[attr-defined]
    return firsts


async def key_tester(gw: Gateway, sim: Simulation, *, concurrency: int = 1) -> None:
    """Seed 004's initial setup: test every key × model once (fills the statistics)."""
    results = await probe_all(gw, targets(gw), concurrency=concurrency)
    assert all(r.ok for r in results), results


def share(firsts: list[str], provider: str) -> float:
    return firsts.count(provider) / len(firsts)


# The simulated session: both providers healthy, groq faster (it wins the traffic), then groq
# degrades to 50 % errors, then it recovers.
HEALTHY_A = Behaviour(0.0, 200.0)
DEGRADED_A = Behaviour(0.5, 200.0)
B_ALWAYS = Behaviour(0.0, 600.0)


@pytest.mark.parametrize("strategy", ["learned", "bandit"])
async def test_a_degraded_provider_loses_its_traffic_within_50_requests(
    tmp_path: Path, strategy: str
) -> None:
    async with simulated(tmp_path, strategy) as (gw, sim):
        sim.behaviour = {A: HEALTHY_A, B: B_ALWAYS}
        await key_tester(gw, sim)
        warm = await run(gw, 60)
        assert share(warm, A) > 0.8  # the faster provider wins while healthy

        sim.behaviour[A] = DEGRADED_A  # day 2: groq starts failing
        after = await run(gw, 150)
        # Within 50 requests groq's share is below 10 %, and it stays there.
        assert share(after[25:50], A) < 0.10, after[:50]
        assert share(after[50:], A) < 0.10
        # Every request was still answered: failures fell back to gemini.
        summary = gw.session_summary()
        assert summary["requests"] == summary["successes"] == 210
        assert summary["failures"] == 0
        a = gw.model_stats[("groq-1", MODELS[A])]
        assert a.fail_count > 0
        assert a.status in ("failing", "working")


async def test_a_recovered_provider_wins_back_the_majority_within_200_requests(
    tmp_path: Path,
) -> None:
    async with simulated(tmp_path, "bandit") as (gw, sim):
        sim.behaviour = {A: HEALTHY_A, B: B_ALWAYS}
        await key_tester(gw, sim)
        await run(gw, 60)
        sim.behaviour[A] = DEGRADED_A
        degraded = await run(gw, 150)
        assert share(degraded[50:], A) < 0.10

        sim.behaviour[A] = HEALTHY_A  # groq recovers
        recovered = await run(gw, 200)
        # Within 200 requests it has the majority again...
        assert share(recovered[150:200], A) > 0.5, recovered
        # ...while exploration stayed bounded before it: gemini kept most of the traffic
        # while groq was still unproven.
        assert share(recovered[:20], A) < 0.5


@pytest.mark.parametrize("strategy", ["learned", "bandit"])
async def test_lower_quality_feedback_loses_share_to_an_equally_fast_better_provider(
    tmp_path: Path, strategy: str
) -> None:
    async with simulated(tmp_path, strategy) as (gw, sim):
        same = Behaviour(0.0, 400.0)
        sim.behaviour = {A: same, B: Behaviour(0.0, 400.0)}
        quality = {A: 0.3, B: 0.9}  # groq's answers are judged worse
        await key_tester(gw, sim)
        firsts = []
        for _ in range(200):
            out = await gw.chat(BODY)
            firsts.append(out.attempts[0].provider)
            await gw.record_feedback(quality[out.provider], request_id=out.request_id)
            gw.clock.advance(0.5)  # type: ignore[attr-defined]
        assert share(firsts[100:], B) > 0.8
        assert gw.model_stats[("groq-1", MODELS[A])].quality_score == pytest.approx(0.3)
        assert gw.model_stats[("gemini-1", MODELS[B])].quality_score == pytest.approx(0.9)


@pytest.mark.parametrize("strategy", ["learned", "bandit"])
async def test_quotas_come_first_the_learned_favourite_is_skipped_when_full(
    tmp_path: Path, strategy: str
) -> None:
    day_cap = [{"metric": "requests", "window": "day", "amount": 8}]
    async with simulated(tmp_path, strategy, a_limits=day_cap) as (gw, sim):
        sim.behaviour = {A: HEALTHY_A, B: B_ALWAYS}
        await key_tester(gw, sim)  # uses one of groq's 8 requests
        firsts = await run(gw, 30)
        assert firsts.count(A) == 7  # the favourite while it has headroom, never beyond
        assert firsts[-15:] == [B] * 15
        rows = await gw.ledger.usage_totals("key")
        assert {r.group: r.requests for r in rows}["groq-1"] == 8


async def test_the_statistics_are_saved_and_restored_across_a_restart(tmp_path: Path) -> None:
    async with simulated(tmp_path, "learned") as (gw, sim):
        sim.behaviour = {A: HEALTHY_A, B: B_ALWAYS}
        await key_tester(gw, sim)
        sim.behaviour[A] = DEGRADED_A
        await run(gw, 40)
        await gw.record_feedback(0.7, provider=B, model=MODELS[B])
        # A snapshot is taken every stats_flush_s (30 s) while traffic flows.
        saved = await gw.ledger.load_model_stats()  # type: ignore[attr-defined]
        assert {(s.key_id, s.model) for s in saved} == {
            ("groq-1", MODELS[A]),
            ("gemini-1", MODELS[B]),
        }
        before = {k: s.to_record() for k, s in gw.model_stats.items()}
        order_before = [x.candidate.provider for x in (await gw.candidates(
            gw.config.routes["smart"], gw.facts(gw.parse(BODY), CallContext()), CallContext()
        ))[0]]  # fmt: skip
    async with simulated(tmp_path, "learned") as (gw2, _):
        assert {k: s.to_record() for k, s in gw2.model_stats.items()} == before
        assert gw2.model_stats[("gemini-1", MODELS[B])].quality_score == pytest.approx(0.7)
        order_after = [x.candidate.provider for x in (await gw2.candidates(
            gw2.config.routes["smart"], gw2.facts(gw2.parse(BODY), CallContext()), CallContext()
        ))[0]]  # fmt: skip
        assert order_after == order_before == [B, A]
