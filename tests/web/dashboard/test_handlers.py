"""The dashboard's server side: ``GET /api/dashboard``, the ``/api/events`` stream, the key
switches and the static files — against a real app, a fake provider and a SQLite ledger."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quotaflow.fake_provider import running_fake_provider
from quotaflow.testing import config
from tests.web.app_client import AppClient, served_app

SECRETS = ("sk-dash-openai-0001", "gsk-dash-groq-0002")


class Api(AppClient):
    async def chat(self, model: str = "auto") -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        async with self.http.post(self.server.make_url("/v1/chat/completions"), json=body) as r:
            assert r.status == 200, await r.text()


def cfg(base_url: str, server: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "server": server or {},
        "settings": {"max_wait_s": 0},
        "providers": [
            {"name": "openai", "protocol": "openai", "base_url": base_url, "models": ["gpt-4o-mini"],
             "keys": [{"id": "openai-1", "secret": SECRETS[0],
                       "limits": [{"metric": "tokens", "window": "day", "amount": 100000}]}]},
            {"name": "groq", "protocol": "openai", "base_url": base_url,
             "models": ["llama-3.1-8b-instant"],
             "keys": [{"id": "groq-1", "secret": SECRETS[1],
                       "limits": [{"metric": "tokens", "window": "once", "amount": 200000}]}]},
        ],
    }  # fmt: skip


@asynccontextmanager
async def serving(tmp_path: Path, server: dict[str, Any] | None = None) -> AsyncIterator[Api]:
    async with (
        running_fake_provider(protocol="openai") as fake,
        served_app(config(cfg(fake.base_url, server)), tmp_path / "home", Api) as a,
    ):
        yield a


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path) as a:
        yield a


def key_of(snap: dict[str, Any], key_id: str) -> dict[str, Any]:
    return next(k for p in snap["providers"] for k in p["keys"] if k["key_id"] == key_id)


async def test_snapshot_needs_the_admin_token_by_default(api: Api) -> None:
    status, body = await api.call("GET", "/api/dashboard", token=None)
    assert status == 401 and body["success"] is False
    assert "admin token" in body["message"]
    assert (await api.call("GET", "/api/dashboard", token="qfadm-wrong"))[0] == 401
    status, body = await api.call("GET", "/api/dashboard")
    assert status == 200 and body["viewer"] == {"admin": True, "mode": "admin"}


async def test_loopback_read_only_view_when_configured(tmp_path: Path) -> None:
    async with serving(tmp_path, {"dashboard_read_only_on_loopback": True}) as api:
        status, body = await api.call("GET", "/api/dashboard", token=None)
        assert status == 200 and body["viewer"] == {"admin": False, "mode": "read_only"}
        # viewing is not acting
        status, body = await api.call("POST", "/api/force_provider", {"provider": "groq"}, token=None)  # fmt: skip
        assert status == 401
        status, _ = await api.call("POST", "/api/keys/groq-1/disable", {}, token=None)
        assert status == 401


async def test_snapshot_matches_status_ledger_and_charts(api: Api) -> None:
    for _ in range(3):
        await api.chat()
    _, snap = await api.call("GET", "/api/dashboard")
    _, status = await api.call("GET", "/api/status", token=None)
    for prov in status["providers"]:
        for k in prov["keys"]:
            mine = key_of(snap, k["key_id"])
            assert (mine["state"], mine["quota_used"], mine["quota_total"]) == (
                k["state"], k["quota_used"], k["quota_total"],
            )  # fmt: skip
    assert snap["system"]["total_keys"] == 2 and snap["system"]["available_keys"] == 2
    assert snap["system"]["overall_used_pct"] == status["overall_used_pct"]
    assert len(snap["log"]) == 3 and all(r["status"] == "ok" for r in snap["log"])
    used = sum(r["total_tokens"] for r in snap["log"])
    assert used > 0
    timeline = snap["charts"]["timeline"]
    assert sum(sum(v) for v in timeline["tokens"].values()) == used
    assert timeline["latency_p50_ms"][-1] is not None
    assert timeline["latency_p95_ms"][-1] >= timeline["latency_p50_ms"][-1]
    assert snap["charts"]["cost_per_day"][-1]["tokens"] == used
    assert {k["key_id"] for k in snap["forecast"]["keys"]} == {"openai-1", "groq-1"}
    assert snap["forecast"]["pools"][0]["route"] == "auto"
    assert [a["name"] for a in snap["agents"]] == ["default"]
    assert snap["agents"][0]["usage"]["tokens_used"] == used
    health = key_of(snap, snap["log"][0]["key_id"])["health"]
    assert health["successes"] >= 1 and health["latency_ewma_ms"] is not None
    text = json.dumps(snap)
    assert not any(secret in text for secret in SECRETS)


async def test_recommendation_follows_forcing_and_disabling(api: Api) -> None:
    _, snap = await api.call("GET", "/api/dashboard")
    rec = snap["recommendation"]
    assert rec["route"] == "auto" and rec["chosen"] is not None
    assert "remaining_pct" in rec["chosen"]["breakdown"]  # the headroom strategy's reasons
    other = "groq" if rec["chosen"]["provider"] == "openai" else "openai"
    assert (await api.call("POST", "/api/force_provider", {"provider": other}))[0] == 200
    _, snap = await api.call("GET", "/api/dashboard")
    assert snap["recommendation"]["chosen"]["provider"] == other
    assert "forced" in snap["recommendation"]["chosen"]["flags"]
    assert snap["system"]["forced_provider"] == other
    key_id = snap["recommendation"]["chosen"]["key_id"]
    status, body = await api.call("POST", f"/api/keys/{key_id}/disable", {})
    assert status == 200 and body["key_id"] == key_id
    _, snap = await api.call("GET", "/api/dashboard")
    assert snap["recommendation"]["chosen"]["key_id"] != key_id
    assert key_of(snap, key_id)["enabled"] is False
    assert key_id in {r["key_id"] for r in snap["recommendation"]["rejected"]}
    # kept in the data folder, like `quotaflow keys disable`: it outlives a restart
    assert (await api.mg.store.get_setting(f"key_state:{key_id}") or "").startswith("disabled@")
    assert (await api.call("POST", f"/api/keys/{key_id}/enable", {}))[0] == 200
    _, snap = await api.call("GET", "/api/dashboard")
    assert snap["recommendation"]["chosen"]["key_id"] == key_id
    assert key_of(snap, key_id)["enabled"] is True


async def test_key_switches_refuse_bad_calls(api: Api) -> None:
    assert (await api.call("POST", "/api/keys/groq-1/disable", {}, token=None))[0] == 401
    status, body = await api.call("POST", "/api/keys/nope/disable", {})
    assert status == 400 and body["error"] == "unknown_key"


async def test_version_moves_only_when_something_changed(api: Api) -> None:
    _, a = await api.call("GET", "/api/dashboard")
    _, b = await api.call("GET", "/api/dashboard")
    assert a["version"] == b["version"] and a["instance"] == b["instance"]
    await api.chat()
    _, c = await api.call("GET", "/api/dashboard")
    assert c["version"] > b["version"]


async def read_event(resp: aiohttp.ClientResponse, within_s: float) -> dict[str, Any]:
    """The next ``snapshot`` event's data."""
    block = b""
    async with asyncio.timeout(within_s):
        while True:
            line = await resp.content.readline()
            if not line:
                raise ConnectionError("stream ended")
            if line in (b"\n", b"\r\n"):
                fields = dict(ln.split(": ", 1) for ln in block.decode().splitlines() if ": " in ln)
                block = b""
                if fields.get("event") == "snapshot":
                    data: dict[str, Any] = json.loads(fields["data"])
                    return data
                continue
            block += line


async def test_event_stream_pushes_changes_within_two_seconds(api: Api) -> None:
    async with api.http.get(
        api.server.make_url("/api/events"), headers=api.headers("admin")
    ) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        first = await read_event(resp, 5)
        assert first["viewer"]["admin"] is True and first["log"] == []
        t0 = time.monotonic()
        await api.chat()
        nxt = await read_event(resp, 2.5)
        assert time.monotonic() - t0 < 2.5
        assert nxt["version"] > first["version"] and len(nxt["log"]) == 1


async def test_event_stream_needs_a_viewer_and_ends_on_shutdown(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        async with api.http.get(api.server.make_url("/api/events")) as resp:
            assert resp.status == 401
        resp = await api.http.get(api.server.make_url("/api/events"), headers=api.headers("admin"))
        await read_event(resp, 5)
        t0 = time.monotonic()
        await api.server.close()  # would wait for the open stream if it did not end
        assert time.monotonic() - t0 < 5
        resp.release()


async def test_static_files_only_from_the_package(api: Api) -> None:
    async with api.http.get(api.server.make_url("/")) as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert 'src="/static/app.js"' in await r.text()
        etag = r.headers["etag"]
    async with api.http.get(api.server.make_url("/"), headers={"if-none-match": etag}) as r:
        assert r.status == 304
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")):  # fmt: skip
        async with api.http.get(api.server.make_url(f"/static/{name}")) as r:
            assert r.status == 200 and r.headers["content-type"].startswith(ctype), name
            assert r.headers["cache-control"] == "no-cache"
    for bad in ("..%2Fdashboard.py", "%2e%2e/app.py", ".hidden.js", "nope.js", "dashboard.py"):
        async with api.http.get(api.server.make_url(f"/static/{bad}")) as r:
            assert r.status == 404, bad


async def test_the_log_shows_refusals_beside_the_ledger_rows(api: Api) -> None:
    await api.chat()
    for key in ("openai-1", "groq-1"):
        assert (await api.call("POST", f"/api/keys/{key}/disable", {}))[0] == 200
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    async with api.http.post(api.server.make_url("/v1/chat/completions"), json=body) as r:
        assert r.status == 429
    _, snap = await api.call("GET", "/api/dashboard")
    refused, answered = snap["log"][:2]
    assert refused["status"] == "refused" and refused["success"] is False
    assert refused["http_status"] == 429 and refused["route"] == "auto"
    assert answered["status"] == "ok"
