"""Seed 004 over HTTP: ``POST /api/feedback``, ``GET /api/session-summary``,
``GET /api/model-stats`` — against a real app, a fake provider and a SQLite ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.fake_provider import running_fake_provider
from quotaflow.testing import config
from tests.web.app_client import AppClient, served_app

MODEL = "llama-3.3-70b-versatile"


class Api(AppClient):
    async def chat(self) -> dict[str, Any]:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        async with self.http.post(
            self.server.make_url("/v1/chat/completions"), json=body,
            headers={"authorization": f"Bearer {self.token}"},
        ) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            return {"request_id": r.headers["x-quotaflow-request-id"], **(await r.json())}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_fake_provider(protocol="openai") as fake:
        cfg = config({
            "providers": [{"name": "groq", "protocol": "openai", "base_url": fake.base_url,
                           "models": [MODEL], "keys": [{"id": "groq-1", "secret": "gsk-web-0001"}]}],
            "settings": {"strategy": "learned"},
        })  # fmt: skip
        async with served_app(cfg, tmp_path / "home", Api) as api:
            yield api


async def test_feedback_by_request_id_lands_on_the_key_model_that_answered(api: Api) -> None:
    answer = await api.chat()
    status, body = await api.call(
        "POST", "/api/feedback", {"request_id": answer["request_id"], "success": True, "score": 0.8}
    )
    assert status == 200, body
    assert body["success"] is True
    [rec] = body["updated"]
    assert (rec["provider"], rec["key"], rec["model"]) == ("groq", "groq-1", MODEL)
    assert rec["qualityScore"] == pytest.approx(0.8)
    assert body["quality"] == {"groq-1": pytest.approx(0.8)}
    assert rec["successCount"] == 1
    # Seed 004's call style: provider + model, success as 1/0; a failed task counts 0.
    status, body = await api.call(
        "POST", "/api/feedback", {"provider": "groq", "model": MODEL, "success": 0, "score": 0.9}
    )
    assert status == 200, body
    assert body["updated"][0]["qualityScore"] == pytest.approx(0.4)
    status, body = await api.call("GET", "/api/model-stats", token=None)
    assert status == 200
    [row] = body["stats"]
    assert row["qualitySamples"] == 2
    assert row["status"] == "working"
    assert row["latencyEwmaMs"] is not None


async def test_session_summary_counts_requests_since_start(api: Api) -> None:
    status, body = await api.call("GET", "/api/session-summary", token=None)
    assert (status, body) == (200, {
        "success": True, "requests": 0, "successes": 0, "failures": 0, "totalTokens": 0,
        "successRate": 0.0,
    })  # fmt: skip
    tokens = 0
    for _ in range(3):
        tokens += (await api.chat())["usage"]["total_tokens"]
    status, body = await api.call("GET", "/api/session-summary", token=None)
    assert status == 200
    assert body == {
        "success": True, "requests": 3, "successes": 3, "failures": 0, "totalTokens": tokens,
        "successRate": 1.0,
    }  # fmt: skip
    assert tokens > 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"score": 0.5}, "name the request"),
        ({"provider": "groq", "score": 0.5}, "name the request"),
        ({"request_id": "qf-nope-1", "score": 0.5}, "no request with id"),
        ({"request_id": "qf-x", "score": 1.5}, "'score' must be from 0 to 1"),
        ({"request_id": "qf-x", "score": "high"}, "'score' must be a number"),
        ({"request_id": "qf-x"}, "'score' is required"),
        ({"request_id": "qf-x", "score": 0.5, "success": "yes"}, "'success' must be"),
        ({"provider": "nosuch", "model": MODEL, "score": 0.5}, "unknown provider"),
        ({"request_id": 7, "score": 0.5}, "'request_id' must be a string"),
    ],
)
async def test_bad_feedback_gets_a_clear_error(api: Api, body: Any, message: str) -> None:
    status, out = await api.call("POST", "/api/feedback", body)
    assert 400 <= status < 500
    assert out["success"] is False
    assert message in out["message"]


async def test_feedback_needs_credentials(api: Api) -> None:
    status, out = await api.call(
        "POST", "/api/feedback", {"provider": "groq", "model": MODEL, "score": 0.5}, token=None
    )
    assert status == 401
    assert out["success"] is False
