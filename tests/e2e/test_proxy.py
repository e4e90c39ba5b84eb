"""The /v1 proxy end to end: a real gateway process, the official openai SDK, the fake provider."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import DEAD, KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows

pytestmark = pytest.mark.e2e


def config(
    fake: Proc, keys: list[tuple[str, str, int | None]], *, extra: str = "", settings: str = ""
) -> str:
    lines = [
        "settings:",
        "  strategy: priority",
        "  max_wait_s: 0",
        *(f"  {s}" for s in settings.splitlines() if s),
        "providers:",
        "  - name: openai",
        f"    base_url: {fake.url}/v1",
        "    timeout_s: 2",
        "    keys:",
    ]
    for i, (kid, secret, quota) in enumerate(keys):
        limits = (
            f", limits: [{{metric: tokens, window: day, amount: {quota}}}]"
            if quota
            else ", limits: []"
        )
        lines.append(f"      - {{id: {kid}, secret: {secret}, priority: {i}{limits}}}")
    return "\n".join(lines) + "\n" + extra


def client(gw: Proc) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url + "/v1", api_key="unused-locally", max_retries=0, timeout=20
    )


def test_plain_completion_routes_and_accounts(fresh_fake: Proc, home: Path) -> None:
    with gateway(config(fresh_fake, [("a", KEYS[0], None)]), home) as gw:
        raw = client(gw).chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "ECHO: hello there"}],
            max_tokens=50,
        )
        resp = raw.parse()
        assert resp.choices[0].message.content == "hello there"
        assert resp.usage is not None and resp.usage.completion_tokens == 2
        assert raw.headers["x-quotaflow-provider"] == "openai"
        assert raw.headers["x-quotaflow-key"] == "a"
        assert raw.headers["x-quotaflow-attempts"] == "1"
        rid = raw.headers["x-quotaflow-request-id"]
    rows = ledger_rows(home)
    assert len(rows) == 1
    row = rows[0]
    assert (row["request_id"], row["status"], row["key_id"]) == (rid, "ok", "a")
    assert row["prompt_tokens"] == resp.usage.prompt_tokens
    assert row["total_tokens"] == resp.usage.total_tokens
    assert row["reserved_tokens"] >= row["total_tokens"]


def test_streaming_with_and_without_include_usage(fresh_fake: Proc, home: Path) -> None:
    with gateway(config(fresh_fake, [("a", KEYS[0], None)]), home) as gw:
        c = client(gw)
        chunks = list(c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO: one two three"}],
            stream=True, stream_options={"include_usage": True},
        ))  # fmt: skip
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "one two three"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 3
        plain = list(c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO: four five"}], stream=True,
        ))  # fmt: skip
        assert all(ch.usage is None for ch in plain)
        assert (
            "".join(ch.choices[0].delta.content or "" for ch in plain if ch.choices) == "four five"
        )
    rows = ledger_rows(home)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["completion_tokens"] for r in rows] == [3, 2]
    assert all(r["stream"] == 1 and r["estimated"] == 0 for r in rows)


def test_tool_calls_and_unknown_fields_pass_through(fresh_fake: Proc, home: Path) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "find",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    with gateway(config(fresh_fake, [("a", KEYS[0], None)]), home) as gw:
        c = client(gw)
        resp = c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "please CALL_TOOL"}], tools=tools,
            parallel_tool_calls=False, seed=7,
        )  # fmt: skip
        call = resp.choices[0].message.tool_calls[0]
        assert resp.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "lookup"
        assert isinstance(json.loads(call.function.arguments), dict)
        follow = c.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "user", "content": "please CALL_TOOL"},
                {"role": "assistant", "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": "42"},
            ],
            tools=tools,
        )
        assert follow.choices[0].finish_reason in ("stop", "length")
        # A field the gateway does not know reaches the provider untouched (which, like the real
        # API, refuses it — and that 400 comes back as is, without a retry elsewhere).
        with pytest.raises(openai.BadRequestError, match="some_future_field"):
            c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                extra_body={"some_future_field": {"x": 1}},
            )  # fmt: skip


@pytest.mark.parametrize("fault", [
    {"kind": "status", "status": 429, "retry_after": 30},
    {"kind": "status", "status": 500},
    {"kind": "timeout"},
    {"kind": "reset_connection"},
])  # fmt: skip
def test_fallback_to_next_key(fresh_fake: Proc, home: Path, fault: dict) -> None:
    fake_control(fresh_fake, "/_fake/faults", {"key": KEYS[0], "count": -1, **fault})
    with gateway(config(fresh_fake, [("a", KEYS[0], None), ("b", KEYS[1], None)]), home) as gw:
        raw = client(gw).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
        assert raw.headers["x-quotaflow-key"] == "b"
        assert raw.headers["x-quotaflow-attempts"] == "2"
    rows = ledger_rows(home)
    assert [(r["key_id"], r["status"]) for r in rows] == [("a", "error"), ("b", "ok")]
    expected_kind = {429: "rate_limited", 500: "server_error"}.get(fault.get("status", 0))
    expected_kind = (
        expected_kind or {"timeout": "timeout", "reset_connection": "connection"}[fault["kind"]]
    )
    assert rows[0]["error_kind"] == expected_kind
    assert rows[0]["total_tokens"] == 0


def test_connection_refused_falls_back_to_another_provider(fresh_fake: Proc, home: Path) -> None:
    extra = "\n".join([
        "  - name: deadhost",
        "    protocol: openai",
        "    base_url: http://127.0.0.1:9/v1",
        "    models: [gpt-4o-mini]",
        "    priority: 0",
        "    keys: [{id: d, secret: sk-test-unreachable-9999}]",
        "routes:",
        "  - name: smart",
        "    deployments:",
        "      - {provider: deadhost, model: gpt-4o-mini}",
        "      - {provider: openai, model: gpt-4o-mini}",
    ]) + "\n"  # fmt: skip
    with gateway(config(fresh_fake, [("a", KEYS[0], None)], extra=extra), home) as gw:
        raw = client(gw).chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
        assert raw.headers["x-quotaflow-provider"] == "openai"
        assert raw.headers["x-quotaflow-route"] == "smart"
    rows = ledger_rows(home)
    assert [(r["provider"], r["status"], r["error_kind"]) for r in rows] == [
        ("deadhost", "error", "connection"), ("openai", "ok", None),
    ]  # fmt: skip


def test_switches_key_when_quota_runs_out_and_never_overshoots(
    fresh_fake: Proc, home: Path
) -> None:
    # Each request: ~10 prompt tokens estimated + 10 max_tokens reserved, ~8 + 10 used.
    with gateway(config(fresh_fake, [("a", KEYS[0], 100), ("b", KEYS[1], 1000)]), home) as gw:
        c = client(gw)
        used_keys = []
        for _ in range(12):
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=10
            )
            used_keys.append(raw.headers["x-quotaflow-key"])
    assert used_keys[0] == "a" and used_keys[-1] == "b"
    switch = used_keys.index("b")
    assert all(k == "a" for k in used_keys[:switch]) and all(k == "b" for k in used_keys[switch:])
    rows = ledger_rows(home, "status='ok'")
    assert sum(r["total_tokens"] for r in rows if r["key_id"] == "a") <= 100
    assert sum(r["total_tokens"] for r in rows if r["key_id"] == "b") <= 1000


def test_dead_key_is_disabled_after_401(fresh_fake: Proc, home: Path) -> None:
    with gateway(config(fresh_fake, [("dead", DEAD, None), ("b", KEYS[1], None)]), home) as gw:
        c = client(gw)
        keys = [
            c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            ).headers["x-quotaflow-key"]
            for _ in range(3)
        ]
    assert keys == ["b", "b", "b"]
    rows = ledger_rows(home)
    dead = [r for r in rows if r["key_id"] == "dead"]
    assert len(dead) == 1 and dead[0]["error_kind"] == "auth" and dead[0]["http_status"] == 401


def test_all_exhausted_is_a_clear_429(fresh_fake: Proc, home: Path) -> None:
    with gateway(config(fresh_fake, [("a", KEYS[0], 30)]), home) as gw:
        c = client(gw)
        c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
            )
    err = info.value
    assert err.status_code == 429
    body = err.body
    assert isinstance(body, dict)
    assert "key:a/tokens/day" in body["message"]
    assert "frees in" in body["message"]
    assert int(err.response.headers["retry-after"]) >= 1
    assert body["quotaflow"]["full_limits"] == ["key:a/tokens/day"]
    # the refused request never went upstream: its row is a refusal with no use
    rows = ledger_rows(home)
    assert [r["status"] for r in rows] == ["ok", "refused"]
    assert (rows[1]["key_id"], rows[1]["total_tokens"], rows[1]["requests"]) == ("", 0, 0)
    assert rows[1]["http_status"] == 429


def test_client_errors_are_returned_not_retried(fresh_fake: Proc, home: Path) -> None:
    fake_control(fresh_fake, "/_fake/faults", {"kind": "status", "status": 400, "count": 1})
    cfg = config(fresh_fake, [("a", KEYS[0], None), ("b", KEYS[1], None)])
    with gateway(cfg, home) as gw, pytest.raises(openai.BadRequestError):
        client(gw).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    rows = ledger_rows(home)
    assert len(rows) == 1 and rows[0]["error_kind"] == "bad_request"


def test_waits_for_a_window_to_free_within_max_wait(fresh_fake: Proc, home: Path) -> None:
    cfg = f"""
settings: {{max_wait_s: 5}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: [{{metric: requests, window: rolling 2s, amount: 1}}]}}]
"""
    with gateway(cfg, home) as gw:
        c = client(gw)
        t0 = time.monotonic()
        for _ in range(2):
            c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
        waited = time.monotonic() - t0
    assert 1.8 <= waited < 5.0
    rows = ledger_rows(home)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[1]["ts"] - rows[0]["ts"] >= 1.9


def test_models_lists_routes_implicit_models_and_auto(fresh_fake: Proc, home: Path) -> None:
    extra = "routes:\n  - name: smart\n    deployments: [{provider: openai, model: gpt-4o-mini}]\n"
    with gateway(config(fresh_fake, [("a", KEYS[0], None)], extra=extra), home) as gw:
        models = {m.id: m for m in client(gw).models.list()}
    assert {"smart", "auto", "gpt-4o-mini", "gpt-4o"} <= set(models)
    assert models["smart"].owned_by == "openai"
