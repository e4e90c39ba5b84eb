"""No secret in any answer, log line or error; Host, CORS and content-type guards; bad input.

One real ``quotaflow serve`` (default mode) holds a YAML key, a key added by the API and an
agent key; every kind of call is made, then everything captured is grepped for the secrets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from quotaflow.engine.catalog import mask_secret
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e

YAML_SECRET = "sk-yaml-SECRET-aaaa-1111"
API_SECRET = "sk-ant-api-SECRET-bbbb-2222"
BAD_SECRET = "sk-bad-SECRET-cccc-3333"
AGENT_KEY = "qf-agent-SECRET-dddd-4444"
FAKES = (YAML_SECRET, API_SECRET, BAD_SECRET, AGENT_KEY)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with fake_upstream("openai") as fake:
        cfg = f"""
server: {{api_max_body_bytes: 2048}}
settings: {{max_wait_s: 0.1}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys: [{{id: openai-1, secret: {YAML_SECRET}, limits: [{{metric: tokens, window: day, amount: 1000000}}]}}]
agents:
  - name: bot
    key: {AGENT_KEY}
"""
        with served(cfg, tmp_path_factory.mktemp("sec") / "home") as s:
            yield s


def test_no_secret_in_answers_logs_or_errors(server: Served) -> None:
    t = server.admin_token
    seen: list[str] = []

    def keep(status_body: tuple[int, object]) -> tuple[int, object]:
        seen.append(json.dumps(status_body[1], ensure_ascii=False))
        return status_body

    assert keep(server.call("POST", "/api/add_key", {"provider": "claude", "api_key": API_SECRET, "quota_total": 1000}, token=t))[0] == 200  # fmt: skip
    keep(server.call("POST", "/api/add_key", {"provider": "nope", "api_key": BAD_SECRET, "quota_total": 1}, token=t))  # fmt: skip
    keep(server.call("POST", "/api/add_key", {"provider": "claude", "api_key": BAD_SECRET, "quota_total": -1}, token=t))  # fmt: skip
    keep(server.call("POST", "/api/add_key", {"provider": "claude", "api_key": BAD_SECRET + " x", "quota_total": 5}, token=t))  # fmt: skip
    keep(server.call("POST", "/api/add_key", raw=b'{"api_key": "' + BAD_SECRET.encode() + b'", ', headers={"content-type": "application/json"}, token=t))  # fmt: skip
    for path in ("/api/status", "/api/history?limit=100", "/api/token-usage/summary",
                 "/api/token-usage/ai/bot", "/api/token-usage/provider-status",
                 "/api/token-usage/emergency-status", "/api/alerts", "/openapi.json"):  # fmt: skip
        keep(server.call("GET", path))
    for path in ("/api/keys", "/api/agents"):
        keep(server.call("GET", path, token=t))
    chat = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    keep(server.call("POST", "/v1/chat/completions", chat, token=AGENT_KEY))
    keep(server.call("POST", "/v1/chat/completions", {**chat, "model": "missing"}, token=AGENT_KEY))
    keep(server.call("POST", "/api/use", {"provider": "claude", "tokens_used": 5}, token=AGENT_KEY))
    keep(server.call("POST", "/api/use", {"key_id": "nope", "tokens_used": 5}, token=AGENT_KEY))

    everything = "\n".join(seen) + "\n" + server.proc.output
    for secret in FAKES:
        assert secret not in everything, secret
    assert mask_secret(API_SECRET) in everything  # shown masked
    assert mask_secret(API_SECRET).endswith("…2222")
    # The two ways to see a whole key, both the admin's: /api/choose and the reveal.
    status, chosen = server.call("POST", "/api/choose", {"tokens_estimate": 1}, token=AGENT_KEY)
    assert status == 200 and chosen["api_key"] in (
        mask_secret(YAML_SECRET),
        mask_secret(API_SECRET),
    )
    status, mine = server.call("POST", "/api/choose", {"tokens_estimate": 1}, token=t)
    assert status == 200 and mine["api_key"] in (YAML_SECRET, API_SECRET)
    server.call("POST", "/api/use", {"reservation_id": chosen["reservation_id"], "provider": chosen["provider"], "tokens_used": 1}, token=AGENT_KEY)  # fmt: skip
    assert server.call("POST", "/api/keys/openai-1/reveal", token=AGENT_KEY)[0] == 403
    assert server.call("POST", "/api/keys/openai-1/reveal")[0] == 401
    assert server.call("POST", "/api/keys/openai-1/reveal", token=t)[1]["api_key"] == YAML_SECRET
    db = (server.home / "quotaflow.db").read_bytes()
    assert API_SECRET.encode() not in db and AGENT_KEY.encode() not in db
    assert t is not None and t.encode() not in (server.home / "admin_token.sha256").read_bytes()
    assert oct((server.home / "master.key").stat().st_mode & 0o777) == "0o600"


def test_host_header_is_checked(server: Served) -> None:
    status, body = server.call("GET", "/api/status", headers={"host": "evil.example"})
    assert status == 421 and body["success"] is False
    assert server.call("GET", "/api/status", headers={"host": "localhost:5050"})[0] == 200
    status, body = server.call("GET", "/v1/models", headers={"host": "rebind.attacker.test:80"})
    assert status == 421 and "error" in body


def test_cors_allows_the_own_origin_only(server: Served) -> None:
    import urllib.request

    req = urllib.request.Request(server.url + "/api/status", headers={"origin": server.url})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["access-control-allow-origin"] == server.url
    req = urllib.request.Request(
        server.url + "/api/status", headers={"origin": "http://localhost:3000"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.headers.get("access-control-allow-origin") is None
    req = urllib.request.Request(
        server.url + "/api/status", headers={"origin": "https://evil.example"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.headers.get("access-control-allow-origin") is None
    status, _ = server.call("OPTIONS", "/api/choose", headers={"origin": server.url, "access-control-request-method": "POST"})  # fmt: skip
    assert status == 204
    status, body = server.call("POST", "/api/force_provider", {"provider": "openai"}, token=server.admin_token, headers={"origin": "https://evil.example"})  # fmt: skip
    assert status == 403 and body["success"] is False


def test_posts_need_a_json_content_type(server: Served) -> None:
    t = server.admin_token
    for ctype in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):  # fmt: skip
        status, body = server.call("POST", "/api/force_provider", raw=b"provider=openai", headers={"content-type": ctype}, token=t)  # fmt: skip
        assert status == 415 and body["success"] is False
    assert server.call("GET", "/api/status")[1]["forced_provider"] is None  # nothing written
    assert server.call("POST", "/api/clear_forced", token=t)[0] == 200  # bodyless POST is fine


BAD = [
    ("/api/choose", {}, "tokens_estimate"),
    ("/api/choose", {"tokens_estimate": "1000"}, "tokens_estimate"),
    ("/api/choose", {"tokens_estimate": -5}, "tokens_estimate"),
    ("/api/choose", {"tokens_estimate": 10**15}, "tokens_estimate"),
    ("/api/choose", {"tokens_estimate": True}, "tokens_estimate"),
    ("/api/choose", [1, 2], "object"),
    ("/api/use", {"provider": "openai"}, "tokens_used"),
    ("/api/use", {"provider": "openai", "tokens_used": 1.5}, "tokens_used"),
    ("/api/use", {"provider": "zzz", "tokens_used": 1}, "unknown provider"),
    ("/api/use", {"provider": "openai", "tokens_used": 1, "success": "yes"}, "success"),
    ("/api/use", {"provider": 7, "tokens_used": 1}, "provider"),
    ("/api/add_key", {"provider": "openai", "api_key": "k", "quota_total": "many"}, "quota_total"),
    ("/api/add_key", {"provider": "openai", "api_key": "", "quota_total": 5}, "api_key"),
    ("/api/add_key", {"provider": "openai", "api_key": "k", "quota_total": 0}, "quota_total"),
    ("/api/force_provider", {"provider": "unknown-one"}, "unknown provider"),
    ("/api/reset_quota", {}, "provider"),
    ("/api/agents", {"name": "x", "switch_threshold": 3}, "switch_threshold"),
    ("/api/agents", {"name": "bad name!"}, "name"),
    ("/api/token-usage/test-ai-call", {"ai_name": "bot"}, "prompt"),
]


@pytest.mark.parametrize(("path", "body", "word"), BAD)
def test_bad_input_is_a_clear_4xx_in_the_seed_envelope(server: Served, path: str, body: object, word: str) -> None:  # fmt: skip
    before = server.call("GET", "/api/status")[1]
    status, answer = server.call("POST", path, body, token=server.admin_token)
    assert 400 <= status < 500, answer
    assert answer["success"] is False and word in answer["message"], answer
    after = server.call("GET", "/api/status")[1]
    assert before == after  # never a partial write


def test_bad_json_oversized_bodies_and_queries(server: Served) -> None:
    t = server.admin_token
    h = {"content-type": "application/json"}
    status, body = server.call("POST", "/api/choose", raw=b"{not json", headers=h, token=t)
    assert status == 400 and "JSON" in body["message"]
    status, body = server.call("POST", "/api/choose", raw=b"{" + b" " * 5000 + b"}", headers=h, token=t)  # fmt: skip
    assert status == 413 and body["success"] is False
    for q in ("limit=abc", "limit=0", "limit=100000", "limit=1&limit=2"):
        status, body = server.call("GET", f"/api/history?{q}")
        assert status == 400 and body["success"] is False and "limit" in body["message"]
    status, body = server.call("GET", "/api/token-usage/history/bot?months=-1")
    assert status == 400 and "months" in body["message"]
    status, body = server.call("GET", "/api/nothing-here")
    assert status == 404 and body["success"] is False
