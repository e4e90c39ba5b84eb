"""``/api`` bodies hold only the fields their endpoint takes: an unknown one is a 400 in the
``success: false`` envelope naming it and the known ones (never dropped, never half-applied),
and the OpenAPI document says so (``additionalProperties: false``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow.testing import config
from quotaflow.web.api.openapi_spec import build_spec
from tests.web.app_client import AppClient as Api
from tests.web.app_client import served_app


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    cfg = config({
        "providers": [
            {"name": "openai", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1",
             "models": ["gpt-4o-mini"], "keys": [{"id": "openai-1", "secret": "sk-val-0001"}]},
            {"name": "anthropic", "protocol": "anthropic", "base_url": "http://127.0.0.1:9",
             "models": ["claude-3-5-haiku"], "keys": [{"id": "anthropic-1", "secret": "sk-ant-val-0001"}]},
        ],
        "agents": [{"name": "imperium"}],
    })  # fmt: skip
    async with served_app(cfg, tmp_path / "home", Api) as api:
        yield api


def body_schemas() -> dict[str, dict[str, Any]]:
    """Every ``/api`` operation with a JSON body, and the schema the document gives it."""
    out = {}
    for path, ops in build_spec("test")["paths"].items():
        post = ops.get("post")
        if path.startswith("/api") and post is not None and "requestBody" in post:
            schema = post["requestBody"]["content"]["application/json"]["schema"]
            if "$ref" in schema:
                schema = build_spec("test")["components"]["schemas"][schema["$ref"].split("/")[-1]]
            out[path.replace("{ai_name}", "imperium")] = schema
    return out


async def test_a_key_asked_with_a_cap_the_api_does_not_take_is_refused_not_added(
    api: Api,
) -> None:
    status, doc = await api.call(
        "POST",
        "/api/add_key",
        {
            "provider": "openai",
            "api_key": "sk-fake-new-9",
            "id": "k9",
            "limits": [{"metric": "tokens", "window": "day", "amount": 500}],
        },
    )
    assert status == 400, doc
    assert (doc["success"], doc["error"]) == (False, "unknown_field")
    assert doc["message"] == (
        "unknown fields 'id', 'limits': /api/add_key takes 'api_key', 'provider', 'quota_total'"
    )
    assert doc["details"] == {
        "unknown_fields": ["id", "limits"],
        "known_fields": ["api_key", "provider", "quota_total"],
    }
    _, keys = await api.call("GET", "/api/keys")
    assert [k["key_id"] for k in keys["keys"]] == ["openai-1", "anthropic-1"]


async def test_forcing_with_an_unknown_field_changes_nothing(api: Api) -> None:
    status, doc = await api.call("POST", "/api/force_provider", {"provider": "anthropic", "x": 1})
    assert status == 400 and doc["message"] == (
        "unknown field 'x': /api/force_provider takes 'provider'"
    )
    _, st = await api.call("GET", "/api/status")
    assert st.get("forced_provider") is None
    status, doc = await api.call("POST", "/api/clear_forced", {"provider": "anthropic"})
    assert status == 400 and doc["message"].endswith("/api/clear_forced takes no field")
    for body in (None, {}):  # seed 000 posts no body at all
        status, doc = await api.call("POST", "/api/clear_forced", body)
        assert status == 200 and doc["success"] is True


async def test_every_documented_body_refuses_an_unknown_field_and_takes_its_own(
    api: Api,
) -> None:
    schemas = body_schemas()
    assert {"/api/add_key", "/api/use", "/api/agents", "/api/feedback"} <= set(schemas)
    for path, schema in schemas.items():
        assert schema.get("additionalProperties") is False, path
        status, doc = await api.call("POST", path, {"zz_unknown": 1})
        assert status == 400, (path, doc)
        assert (doc["success"], doc["error"], doc["details"]["unknown_fields"]) == (
            False,
            "unknown_field",
            ["zz_unknown"],
        ), path
        # Every field the document gives is one the endpoint takes.
        assert set(schema["properties"]) <= set(doc["details"]["known_fields"]), path


async def test_the_seed_bodies_are_still_taken(api: Api) -> None:
    status, doc = await api.call(
        "POST",
        "/api/use",
        {"provider": "openai", "tokens_used": 1500, "success": True, "reason": None},
    )
    assert status == 200, doc
    status, doc = await api.call(
        "POST",
        "/api/add_key",
        {"provider": "openai", "api_key": "sk-fake-new-9", "quota_total": 500},
    )
    assert (status, doc["quota_total"]) == (200, 500), doc
    status, doc = await api.call("POST", "/api/reset_quota", {"provider": "openai"})
    assert status == 200, doc


async def test_a_body_of_many_unknown_fields_is_not_echoed_whole(api: Api) -> None:
    body = {f"f{i:03}" + "x" * 200: i for i in range(50)}
    status, doc = await api.call("POST", "/api/choose", body)
    assert status == 400
    assert len(doc["details"]["unknown_fields"]) == 10
    assert all(len(name) == 64 for name in doc["details"]["unknown_fields"])
    assert "and 40 more: /api/choose takes 'tokens_estimate'" in doc["message"]
