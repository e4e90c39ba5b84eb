"""``GET /metrics``: open on loopback, token-guarded on an exposed bind, parsable, secret-free."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from quotaflow.runtime import Runtime, build_gateway
from quotaflow.testing import config
from quotaflow.web.app import create_app

SECRET = "sk-metrics-canary-0001"
METRICS_TOKEN = "scrape-token-for-tests-123"


def cfg() -> dict:
    return {
        "providers": [
            {
                "name": "openai",
                "protocol": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "models": ["gpt-4o-mini"],
                "keys": [
                    {
                        "id": "openai-1",
                        "secret": SECRET,
                        "limits": [{"metric": "tokens", "window": "day", "amount": 1000}],
                    }
                ],
            },
        ],
    }


@asynccontextmanager
async def serving(tmp_path: Path, bind_host: str) -> AsyncIterator[tuple[TestServer, str]]:
    home = tmp_path / "home"
    gw = build_gateway(config(cfg()), home)
    mg = Runtime.build(gw, home, bind_host=bind_host)
    # The test server listens on loopback; the bind it is told of decides the guard.
    srv = TestServer(create_app(gw, runtime=mg), host="127.0.0.1")
    await srv.start_server()
    try:
        assert mg.new_admin_token is not None
        yield srv, mg.new_admin_token
    finally:
        await srv.close()


async def get(srv: TestServer, token: str | None = None) -> tuple[int, str]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(srv.make_url("/metrics"), headers=headers) as r,
    ):
        return r.status, await r.text()


async def test_loopback_serves_metrics_without_a_token(tmp_path: Path) -> None:
    async with serving(tmp_path, "127.0.0.1") as (srv, _):
        status, text = await get(srv)
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "quotaflow_requests",
        "quotaflow_headroom_ratio",
        "quotaflow_ledger_queue_depth",
    } <= names
    headroom = next(
        f for f in text_string_to_metric_families(text) if f.name == "quotaflow_headroom_ratio"
    )
    assert [(s.labels["key"], s.value) for s in headroom.samples] == [("openai-1", 1.0)]
    assert SECRET not in text


async def test_an_exposed_bind_needs_the_admin_or_the_metrics_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUOTAFLOW_METRICS_TOKEN", METRICS_TOKEN)
    async with serving(tmp_path, "0.0.0.0") as (srv, admin):
        assert (await get(srv))[0] == 401
        assert (await get(srv, "wrong-token"))[0] == 401
        assert (await get(srv, METRICS_TOKEN))[0] == 200
        assert (await get(srv, admin))[0] == 200


async def test_metrics_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTAFLOW_METRICS", "off")
    async with serving(tmp_path, "127.0.0.1") as (srv, _):
        status, text = await get(srv)
    assert status == 404 and "QUOTAFLOW_METRICS" in text


async def test_requests_refused_before_routing_get_their_access_line_and_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quotaflow.access")
    async with serving(tmp_path, "127.0.0.1") as (srv, _):
        async with aiohttp.ClientSession() as http:
            url = srv.make_url("/v1/chat/completions")
            async with http.post(
                url, data=b"{not json", headers={"content-type": "application/json"}
            ) as r:
                assert r.status == 400
            body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(url, json=body) as r:
                assert r.status == 404
        _, text = await get(srv)
    lines = [r.fields for r in caplog.records if r.name == "quotaflow.access"]
    assert [(f["status"], f["door"], f["attempts"]) for f in lines] == [
        (400, "chat", 0),
        (404, "chat", 0),
    ]
    assert lines[1]["error_kind"] == "not_found"
    requests = next(
        f for f in text_string_to_metric_families(text) if f.name == "quotaflow_requests"
    )
    assert sum(s.value for s in requests.samples if s.labels.get("status_class") == "4xx") == 2
