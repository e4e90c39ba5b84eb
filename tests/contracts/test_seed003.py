"""Seed 003 (OpenAI fallback + token usage), replayed against a real ``quotaflow serve``.

Two fake providers (Anthropic and OpenAI wire formats) stand in for the real ones; the
agents of the seed (``imperium``: Anthropic 140k/month primary, OpenAI 9k/month fallback
at 95 %, 42 req/min, 3,400 req/day, 17,000 tokens per request) are declared in the YAML.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import Proc
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e

SEED_URL = "http://localhost:4000"
IMPERIUM_KEY = "qf-imperium-test-key-0001"
GUARDIAN_KEY = "qf-guardian-test-key-0002"


def config(anthropic: str, openai: str) -> str:
    return f"""
settings:
  max_wait_s: 0.2
providers:
  - name: anthropic
    base_url: {anthropic}
    keys: [{{id: anthropic-1, secret: sk-ant-test-0001, limits: [{{metric: tokens, window: month, amount: 1000000}}]}}]
  - name: openai
    base_url: {openai}/v1
    keys: [{{id: openai-1, secret: sk-openai-test-0001, limits: [{{metric: tokens, window: month, amount: 1000000}}]}}]
agents:
  - name: imperium
    key: {IMPERIUM_KEY}
    budgets:
      - {{metric: tokens, window: month, amount: 140000, provider: anthropic}}
      - {{metric: tokens, window: month, amount: 9000, provider: openai}}
    providers: [anthropic, openai]
    switch_threshold: 0.95
    requests_per_minute: 42
    requests_per_day: 3400
    max_tokens_per_request: 17000
  - name: guardian
    key: {GUARDIAN_KEY}
    budgets:
      - {{metric: tokens, window: month, amount: 400, provider: anthropic}}
      - {{metric: tokens, window: month, amount: 5000, provider: openai}}
    providers: [anthropic, openai]
  - name: sprinter
    requests_per_minute: 3
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[Proc, Proc]]:
    with fake_upstream("anthropic") as a, fake_upstream("openai") as o:
        yield a, o


@pytest.fixture(scope="module")
def local(fakes: tuple[Proc, Proc], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    a, o = fakes
    with served(config(a.url, o.url), tmp_path_factory.mktemp("s003") / "home", "--trust-local") as s:  # fmt: skip
        yield s


@pytest.fixture(scope="module")
def secured(fakes: tuple[Proc, Proc], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    a, o = fakes
    with served(config(a.url, o.url), tmp_path_factory.mktemp("s003s") / "home") as s:
        yield s


def curl(cmd: str, server: Served) -> dict:
    cmd = cmd.replace(SEED_URL, server.url).replace("| jq '.'", "")
    out = subprocess.run(["bash", "-c", cmd.replace("curl ", "curl -s ", 1)], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_seed_curl_examples_run_verbatim(local: Served) -> None:
    status = curl("curl http://localhost:4000/api/token-usage/provider-status", local)
    assert status["success"] is True
    imperium = status["agents"]["imperium"]
    assert imperium["recommended_provider"] == "anthropic"
    assert imperium["reason"] == "primary_available"
    assert imperium["threshold"] == 0.95

    call = curl(
        """curl -X POST http://localhost:4000/api/token-usage/test-ai-call \\
  -H "Content-Type: application/json" \\
  -d '{
    "ai_name": "imperium",
    "prompt": "Generate a Flutter widget for user authentication"
  }'""",
        local,
    )
    assert call["success"] is True and call["ai_name"] == "imperium", call
    assert isinstance(call["response"], str) and call["response"]
    info = call["provider_info"]
    assert (info["provider"], info["reason"]) == ("anthropic", "primary_available")
    assert info["tokens_used"] > 0

    summary = curl("curl http://localhost:4000/api/token-usage/summary | jq '.'", local)
    assert summary["success"] is True
    assert summary["agents"]["imperium"]["tokens_used"] == info["tokens_used"]
    assert summary["providers"]["anthropic"]["tokens_used"] >= info["tokens_used"]
    # the documented fields, and whether part of the cost is an estimate (here: known prices)
    assert set(summary["total"]) == {"tokens_used", "requests", "cost_usd", "cost_estimated"}
    assert summary["total"]["cost_estimated"] is False

    emergency = curl("curl http://localhost:4000/api/token-usage/emergency-status | jq '.'", local)
    assert emergency["success"] is True
    assert emergency["thresholds"] == {"warning": 80, "critical": 95, "emergency": 98}
    assert emergency["status"] in {"normal", "warning", "critical", "emergency"}


def test_every_endpoint_answers_with_the_documented_shape(local: Served) -> None:
    status, call = local.call("POST", "/api/token-usage/test-ai-call", {"ai_name": "imperium", "prompt": "Hello, this is a test", "preferred_provider": "openai"})  # fmt: skip
    assert status == 200 and call["provider_info"]["provider"] == "openai", call
    assert call["provider_info"]["reason"] == "preferred_provider"
    status, ai = local.call("GET", "/api/token-usage/ai/imperium")
    assert status == 200 and ai["success"] is True
    assert ai["provider_order"] == ["anthropic", "openai"]
    assert ai["rate_limits"] == {"requests_per_minute": 42, "requests_per_day": 3400}
    assert ai["max_tokens_per_request"] == 17000
    assert ai["providers"]["anthropic"]["monthly_limit"] == 140000
    assert ai["providers"]["openai"]["monthly_limit"] == 9000
    assert ai["providers"]["openai"]["tokens_used"] > 0  # the preferred_provider call

    status, one = local.call("GET", "/api/token-usage/provider-status/imperium")
    assert status == 200 and one["recommended_provider"] == "anthropic"
    assert set(one["providers"]) == {"anthropic", "openai"}

    status, hist = local.call("GET", "/api/token-usage/history/imperium?months=6")
    assert status == 200 and len(hist["months"]) == 6
    assert hist["months"][0]["tokens_used"] == ai["tokens_used"]
    assert all(m["tokens_used"] == 0 for m in hist["months"][1:])

    status, alerts = local.call("GET", "/api/token-usage/alerts")
    assert status == 200 and isinstance(alerts["alerts"], list)

    status, missing = local.call("GET", "/api/token-usage/ai/nobody-here")
    assert status == 404 and missing["success"] is False


def test_primary_switches_to_fallback_at_the_threshold_then_reset_restores_it(
    local: Served,
) -> None:
    providers = []
    for _ in range(40):
        status, call = local.call("POST", "/api/token-usage/test-ai-call", {"ai_name": "guardian", "prompt": "hi", "max_tokens": 8})  # fmt: skip
        assert status == 200, call
        providers.append((call["provider_info"]["provider"], call["provider_info"]["reason"]))
        if providers[-1][0] == "openai":
            break
    assert providers[0] == ("anthropic", "primary_available")
    assert providers[-1] == ("openai", "fallback_threshold_reached")
    st = local.call("GET", "/api/token-usage/provider-status/guardian")[1]
    assert st["recommended_provider"] == "openai"
    assert st["providers"]["anthropic"]["usage_percentage"] >= 95.0 or not st["providers"]["anthropic"]["available"]  # fmt: skip
    emergency = local.call("GET", "/api/token-usage/emergency-status")[1]
    # guardian at its own Anthropic budget is told apart; the gateway's keys all still serve
    assert emergency["agents"]["guardian"] in {"critical", "emergency"}
    assert emergency["status"] == "normal"

    kinds = [(a["subject"], a["level"]) for a in local.call("GET", "/api/token-usage/alerts")[1]["alerts"]]  # fmt: skip
    budget = "agent:guardian@anthropic/tokens/month"
    crossed = [lv for s, lv in kinds if s == budget]
    assert len(crossed) == len(set(crossed)) >= 1  # each level once
    again = local.call("GET", "/api/token-usage/alerts")[1]["alerts"]
    assert len([a for a in again if a["subject"] == budget]) == len(crossed)  # no repeats

    status, reset = local.call("POST", "/api/token-usage/reset/guardian")
    assert status == 200 and reset["success"] is True
    st = local.call("GET", "/api/token-usage/provider-status/guardian")[1]
    assert (st["recommended_provider"], st["reason"]) == ("anthropic", "primary_available")


def test_rate_limit_and_token_cap(local: Served) -> None:
    codes = [
        local.call(
            "POST",
            "/api/token-usage/test-ai-call",
            {"ai_name": "sprinter", "prompt": "x", "max_tokens": 4},
        )[0]
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    status, body = local.call("POST", "/api/token-usage/test-ai-call", {"ai_name": "imperium", "prompt": "x", "max_tokens": 17001})  # fmt: skip
    assert status == 400 and body["success"] is False and "17000" in body["message"]


def test_agent_keys_on_v1_and_admin_only_reset(secured: Served) -> None:
    chat = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    status, body = secured.call("POST", "/v1/chat/completions", chat, token=IMPERIUM_KEY)
    assert status == 200, body
    status, body = secured.call(
        "POST", "/v1/chat/completions", chat, token="qf-not-a-real-key-000000"
    )
    assert status == 401 and body["error"]["type"] == "authentication_error"
    ai = secured.call("GET", "/api/token-usage/ai/imperium")[1]
    assert ai["requests"] == 1 and ai["providers"]["anthropic"]["tokens_used"] > 0

    status, body = secured.call("POST", "/api/token-usage/reset/imperium")
    assert status == 401 and body["success"] is False
    status, body = secured.call("POST", "/api/token-usage/reset/imperium", token=IMPERIUM_KEY)
    assert status == 403  # an agent key without the admin right
    status, body = secured.call(
        "POST", "/api/token-usage/reset/imperium", token=secured.admin_token
    )
    assert status == 200 and body["success"] is True

    status, body = secured.call("POST", "/api/token-usage/test-ai-call", {"ai_name": "imperium", "prompt": "x"})  # fmt: skip
    assert status == 401
    status, body = secured.call("POST", "/api/token-usage/test-ai-call", {"ai_name": "guardian", "prompt": "x"}, token=IMPERIUM_KEY)  # fmt: skip
    assert status == 403  # an agent calls for itself only
    status, body = secured.call("POST", "/api/token-usage/test-ai-call", {"ai_name": "imperium", "prompt": "x", "max_tokens": 8}, token=IMPERIUM_KEY)  # fmt: skip
    assert status == 200 and body["provider_info"]["provider"] == "anthropic"


def test_admin_api_creates_agents_whose_key_works_and_survives_restart(
    fakes: tuple[Proc, Proc], tmp_path: Path
) -> None:
    a, o = fakes
    home = tmp_path / "home"
    chat = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    with served(config(a.url, o.url), home) as s:
        status, created = s.admin("POST", "/api/agents", {
            "name": "scout", "providers": ["openai", "anthropic"],
            "budgets": [{"metric": "requests", "window": "day", "amount": 2}],
        })  # fmt: skip
        assert status == 201, created
        key = created["api_key"]
        assert key.startswith("qf-")
        token = s.admin_token
    assert key.encode() not in (home / "quotaflow.db").read_bytes()  # only its hash is stored
    with served(config(a.url, o.url), home) as s:
        status, body = s.call("POST", "/v1/chat/completions", chat, token=key)
        assert status == 200 and body["object"] == "chat.completion"
        assert s.call("POST", "/v1/chat/completions", chat, token=key)[0] == 200
        status, body = s.call("POST", "/v1/chat/completions", chat, token=key)
        assert status == 429  # the budget of 2 requests a day
        ai = s.call("GET", "/api/token-usage/ai/scout")[1]
        assert ai["requests"] == 2 and set(ai["providers"]) == {"openai"}
        status, listed = s.call("GET", "/api/agents", token=token)
        assert status == 200 and "scout" in {x["name"] for x in listed["agents"]}
        assert key not in json.dumps(listed)
        assert s.call("DELETE", "/api/agents/scout", token=token)[0] == 200
        assert s.call("POST", "/v1/chat/completions", chat, token=key)[0] == 401
