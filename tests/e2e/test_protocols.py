"""Every wire protocol end to end: the official openai SDK → a real ``quotaflow serve`` → the
fake provider speaking ``openai``, ``anthropic`` or ``gemini`` (subprocesses, real sockets).

For each protocol: plain text, streamed deltas with usage, a tool-call round trip, usage and
cost in the ledger, and each error kind mapped and acted on (429 → cool-down + fallback,
5xx / timeout / connection → fallback, dead key → disabled, exhausted quota → depleted and
skipped, 400 → returned as is, context too long → a larger window, content filter → the
route's fallback route).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from quotaflow.storage.ledgers.sqlite import SqliteLedger
from tests.e2e.procs import Proc, fake_control, fake_provider, gateway, ledger_rows

pytestmark = pytest.mark.e2e

PROTOCOLS = ("openai", "anthropic", "gemini")
K1, K2, DEAD = "sk-proto-one-0001", "sk-proto-two-0002", "sk-proto-dead-0000"
MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.0-flash"}
BIG = {"openai": "gpt-4.1-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-pro"}
PRICE_IN, PRICE_OUT = 2.0, 8.0  # USD per million tokens, given to every model below
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Proc]]:
    """One fake provider per protocol, knowing K1, K2 and the dead key DEAD."""
    with contextlib.ExitStack() as stack:
        yield {
            proto: stack.enter_context(
                fake_provider(proto, "--key", K1, "--key", K2, "--invalid-key", DEAD)
            )
            for proto in PROTOCOLS
        }


@dataclass(frozen=True)
class Fake:
    url: str
    protocol: str


@pytest.fixture(params=PROTOCOLS)
def fake(request: pytest.FixtureRequest, fakes: dict[str, Proc]) -> Fake:
    """The fake provider of one protocol, reset: no faults, fresh keys."""
    p = fakes[request.param]
    fake_control(p, "/_fake/reset")
    fake_control(p, "/_fake/faults", method="DELETE")
    for k in (K1, K2):
        fake_control(p, "/_fake/keys", {"key": k, "quota_tokens": None, "invalid": False})
    return Fake(p.url, request.param)


def base_url(fake: Fake) -> str:
    proto: str = fake.protocol
    return fake.url + {"openai": "/v1", "anthropic": "", "gemini": "/v1beta"}[proto]


def config(fake: Fake, keys: list[tuple[str, str]], routes: str = "") -> str:
    """A gateway config: provider ``p`` of the fake's protocol with priced models (the small
    one has an 8k window, the big one 1M), keys tried in the given order."""
    proto: str = fake.protocol
    price = f"input: {PRICE_IN}, output: {PRICE_OUT}, cached: 1.0"
    lines = [
        "settings:",
        "  strategy: priority",
        "  max_wait_s: 0",
        "  failure_threshold: 10",
        "  preferred_providers: []",
        "providers:",
        "  - name: p",
        f"    protocol: {proto}",
        f"    base_url: {base_url(fake)}",
        "    timeout_s: 1",
        "    models:",
        f"      - {{name: {MODEL[proto]}, context_window: 8000, {price}}}",
        f"      - {{name: {BIG[proto]}, context_window: 1000000, {price}}}",
        "    keys:",
    ]
    for i, (kid, secret) in enumerate(keys):
        lines.append(f"      - {{id: {kid}, secret: {secret}, priority: {i}, limits: []}}")
    return "\n".join(lines) + "\n" + routes


def client(gw: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=20)


def ask(c: openai.OpenAI, model: str, text: str = "hi", **kw: Any) -> Any:
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=20, **kw
    )


def cost(prompt: int, completion: int) -> float:
    return (prompt * PRICE_IN + completion * PRICE_OUT) / 1_000_000


def test_text_stream_tools_usage_and_cost(fake: Fake, home: Path) -> None:
    proto: str = fake.protocol
    model = MODEL[proto]
    before = int(time.time()) - 1
    with gateway(config(fake, [("a", K1)]), home) as gw, client(gw) as c:
        raw = ask(c, model, "ECHO: hello from quotaflow")
        resp = raw.parse()
        assert resp.choices[0].message.content == "hello from quotaflow"
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None and resp.usage.completion_tokens == 3
        assert resp.created >= before
        assert raw.headers["x-quotaflow-provider"] == "p"

        chunks = list(c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "ECHO: one two three four"}],
            stream=True, stream_options={"include_usage": True},
        ))  # fmt: skip
        deltas = [ch.choices[0].delta.content for ch in chunks if ch.choices]
        assert "".join(d or "" for d in deltas) == "one two three four"
        assert len([d for d in deltas if d]) >= 2  # real deltas, not one blob
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 4
        assert all(ch.created >= before for ch in chunks)

        first = c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "please CALL_TOOL zeta"}],
            tools=TOOLS, max_tokens=50,
        )  # fmt: skip
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "lookup",
            {"q": "zeta"},
        )
        follow = c.chat.completions.create(
            model=model,
            messages=[
                {"role": "user", "content": "please CALL_TOOL zeta"},
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": '{"meaning": "last letter"}'},
                {"role": "user", "content": "ECHO: thanks"},
            ],
            tools=TOOLS, max_tokens=50,
        )  # fmt: skip
        assert follow.choices[0].message.content == "thanks"
    rows = ledger_rows(home)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert [r["stream"] for r in rows] == [0, 1, 0, 0]
    for r in rows:
        assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["estimated"] == 0
        assert r["cost_usd"] == pytest.approx(cost(r["prompt_tokens"], r["completion_tokens"]))
    assert rows[0]["prompt_tokens"] == resp.usage.prompt_tokens
    assert rows[1]["completion_tokens"] == 4
    # Cost summed per key, provider and agent by the ledger's report query.
    totals = asyncio.run(_totals(home))
    want = sum(r["cost_usd"] for r in rows)
    assert want > 0
    for group, name in (("key", "a"), ("provider", "p"), ("agent", rows[0]["agent"])):
        assert totals[group][name] == pytest.approx(want)


async def _totals(home: Path) -> dict[str, dict[str, float]]:
    ledger = SqliteLedger(home / "quotaflow.db")
    await ledger.open()
    try:
        return {
            g: {t.group: t.cost_usd for t in await ledger.usage_totals(g)}
            for g in ("key", "provider", "agent")
        }
    finally:
        await ledger.close()


def test_transient_failures_fall_back_and_429_cools_the_key(fake: Fake, home: Path) -> None:
    model = MODEL[fake.protocol]
    faults = [
        ({"kind": "status", "status": 500}, "server_error"),
        ({"kind": "status", "status": 503}, "server_error"),
        ({"kind": "timeout"}, "timeout"),
        ({"kind": "reset_connection"}, "connection"),
        ({"kind": "status", "status": 429, "retry_after": 30}, "rate_limited"),
    ]
    with gateway(config(fake, [("a", K1), ("b", K2)]), home) as gw, client(gw) as c:
        for fault, _ in faults:
            fake_control(fake, "/_fake/faults", {"key": K1, "count": 1, **fault})
            raw = ask(c, model)
            assert (raw.headers["x-quotaflow-key"], raw.headers["x-quotaflow-attempts"]) == (
                "b",
                "2",
            )
        # The 429 said "retry after 30 s": the key is cooling down and not even tried now.
        raw = ask(c, model)
        assert (raw.headers["x-quotaflow-key"], raw.headers["x-quotaflow-attempts"]) == ("b", "1")
    rows = ledger_rows(home)
    errors = [(r["key_id"], r["error_kind"]) for r in rows if r["status"] == "error"]
    assert errors == [("a", kind) for _, kind in faults]
    assert [r["key_id"] for r in rows if r["status"] == "ok"] == ["b"] * (len(faults) + 1)
    assert all(r["total_tokens"] == 0 for r in rows if r["status"] == "error")


def test_dead_key_disabled_and_exhausted_key_depleted(fake: Fake, home: Path) -> None:
    model = MODEL[fake.protocol]
    fake_control(fake, "/_fake/keys", {"key": K1, "quota_tokens": 5, "used_tokens": 5})
    with (
        gateway(config(fake, [("dead", DEAD), ("empty", K1), ("b", K2)]), home) as gw,
        client(gw) as c,
    ):
        first = ask(c, model)
        assert (first.headers["x-quotaflow-key"], first.headers["x-quotaflow-attempts"]) == (
            "b",
            "3",
        )
        for _ in range(2):  # neither the dead key nor the empty one is tried again
            raw = ask(c, model)
            assert (raw.headers["x-quotaflow-key"], raw.headers["x-quotaflow-attempts"]) == (
                "b",
                "1",
            )
    rows = ledger_rows(home)
    assert [(r["key_id"], r["status"], r["error_kind"]) for r in rows] == [
        ("dead", "error", "auth"), ("empty", "error", "quota_exhausted"),
        ("b", "ok", None), ("b", "ok", None), ("b", "ok", None),
    ]  # fmt: skip


def test_request_errors_context_and_content_filter(fake: Fake, home: Path) -> None:
    proto: str = fake.protocol
    small, big = MODEL[proto], BIG[proto]
    routes = "\n".join([
        "routes:",
        "  - name: ctx",
        "    deployments:",
        f"      - {{provider: p, model: {small}}}",
        f"      - {{provider: p, model: {big}}}",
        "  - name: guarded",
        "    fallback_route: safe",
        f"    deployments: [{{provider: p, model: {small}}}]",
        "  - name: safe",
        f"    deployments: [{{provider: p, model: {big}}}]",
    ]) + "\n"  # fmt: skip
    with gateway(config(fake, [("a", K1), ("b", K2)], routes), home) as gw, client(gw) as c:
        # 400: the client's fault, returned as is, never retried on the other key.
        fake_control(fake, "/_fake/faults", {"kind": "status", "status": 400, "count": 1})
        with pytest.raises(openai.BadRequestError):
            ask(c, small)
        # Context too long on the small window: only the larger window is tried next.
        fake_control(fake, "/_fake/faults", {"kind": "context_length", "model": small, "count": -1})
        raw = ask(c, "ctx")
        assert (raw.headers["x-quotaflow-model"], raw.headers["x-quotaflow-attempts"]) == (big, "2")
        # With no larger window the provider's context error comes back as OpenAI's 400.
        with pytest.raises(openai.BadRequestError) as info:
            ask(c, small)
        assert info.value.code == "context_length_exceeded"
        fake_control(fake, "/_fake/faults", method="DELETE")
        # A content-filter refusal moves to the route's fallback route…
        fake_control(fake, "/_fake/faults", {"kind": "content_filter", "model": small, "count": 2})
        raw = ask(c, "guarded")
        assert (raw.headers["x-quotaflow-route"], raw.headers["x-quotaflow-model"]) == ("safe", big)
        assert raw.parse().choices[0].message.content
        # …and without a fallback route it is returned as is.
        if proto == "openai":
            with pytest.raises(openai.BadRequestError) as info:
                ask(c, small)
            assert info.value.code == "content_filter"
        else:
            resp = ask(c, small).parse()
            assert resp.choices[0].finish_reason == "content_filter"
            assert not resp.choices[0].message.content
    rows = ledger_rows(home)
    kinds = [(r["route"], r["model"], r["status"], r["error_kind"]) for r in rows]
    filtered_status = "error"
    assert kinds == [
        (small, small, "error", "bad_request"),
        ("ctx", small, "error", "context_too_long"),
        ("ctx", big, "ok", None),
        (small, small, "error", "context_too_long"),
        ("guarded", small, filtered_status, "content_filtered"),
        ("safe", big, "ok", None),
        (small, small, "error" if proto == "openai" else "ok",
         "content_filtered" if proto == "openai" else None),
    ]  # fmt: skip
