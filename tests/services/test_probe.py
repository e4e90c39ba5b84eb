"""The key tester's engine: results feed each key's health, so routing uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider
from quotaflow.library import AsyncGateway
from quotaflow.runtime import open_runtime, resolve_config
from quotaflow.services.probe import probe_all, results_document, summarize, targets
from tests.cli.fakes import provider_config


def config(url: str) -> dict:
    return {"providers": [provider_config("fake", url, ["K1", "DEAD", "EMPTY"], ["m1", "m2"],
                                          key_limits=[{"metric": "tokens", "window": "day", "amount": 10000}])]}  # fmt: skip


async def test_probe_books_health_stats_and_ledger(tmp_path: Path) -> None:
    keys = {"K1": KeyState(), "DEAD": KeyState(invalid=True), "EMPTY": KeyState(quota_tokens=0)}
    async with running_fake_provider(FakeProviderConfig(protocol="openai", keys=keys)) as fake:
        cfg = resolve_config(config(fake.base_url))
        async with open_runtime(cfg, tmp_path) as runtime:
            engine = runtime.gateway
            todo = targets(engine)
            assert len(todo) == 6
            seen = []
            results = await probe_all(
                engine, todo, timeout_s=5, concurrency=2, on_result=seen.append
            )
            assert len(seen) == 6
            by = {(r.key_id, r.model): r for r in results}
            assert by[("fake-1", "m1")].ok and by[("fake-1", "m1")].tokens > 0
            assert by[("fake-2", "m1")].error_kind == "auth"
            assert by[("fake-3", "m2")].error_kind == "quota_exhausted"
            assert "DEAD" not in (by[("fake-2", "m1")].error or "")
            assert engine.health["fake-2"].disabled_reason is not None
            assert engine.health["fake-3"].depleted_until is not None
            assert engine.stats_for("fake-1", "m2").success_count == 1
            s = summarize(results)
            assert (s.total, s.passed, s.failed, s.pass_rate) == (6, 2, 4, 33.3)
            assert s.fastest is not None and s.fastest.key_id == "fake-1"
            assert results_document(results, s, 0.0)["summary"]["passed"] == 2
            with pytest.raises(ValueError, match="unknown provider"):
                targets(engine, ["nope"])
            assert [t.model for t in targets(engine, models=["m2"])] == ["m2"] * 3

        # a later engine on the same folder routes around the keys the tester found bad
        async with AsyncGateway(cfg, home=tmp_path) as gw:
            assert gw.engine.health["fake-2"].disabled_reason is not None
            for _ in range(4):
                body = await gw.chat([{"role": "user", "content": "hi"}], model="m1")
                assert body["quotaflow"]["key"] == "fake-1"
                assert body["quotaflow"]["attempts"] == 1
