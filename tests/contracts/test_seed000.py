"""Seed 000 (Skynet Token Switcher), replayed against a real ``quotaflow serve`` process.

Every curl, Python and JavaScript example of the seed runs verbatim (only the port of
``127.0.0.1:5050`` is replaced by the test server's), first in ``--trust-local`` mode
with no token, then in the default mode with the admin token added.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_helpers import Served, served

pytestmark = pytest.mark.e2e

SEED_URL = "http://127.0.0.1:5050"
CONFIG = """
settings:
  choose_ttl_s: 3
"""
STATES = {"ok", "warning", "critical", "depleted"}

# The seed's examples, verbatim.
CURL_CHOOSE = """curl -X POST http://127.0.0.1:5050/api/choose \\
  -H "Content-Type: application/json" \\
  -d '{"tokens_estimate": 1000}'"""
CURL_STATUS = "curl http://127.0.0.1:5050/api/status"
CURL_USE = """curl -X POST http://127.0.0.1:5050/api/use \\
  -H "Content-Type: application/json" \\
  -d '{
    "provider": "claude",
    "tokens_used": 1500,
    "success": true
  }'"""
PYTHON_AGENT = """import requests

# Get recommended provider
response = requests.post('http://127.0.0.1:5050/api/choose', json={
    'tokens_estimate': 2000
})
result = response.json()

if result['success']:
    provider = result['provider']
    api_key = result['api_key']

    # Use the recommended provider
    # ... make your API call ...

    # Register the usage
    requests.post('http://127.0.0.1:5050/api/use', json={
        'provider': provider,
        'tokens_used': 2000,
        'success': True
    })
else:
    print(f"No providers available: {result['message']}")
"""
JS_AGENT = """// Choose provider
const chooseProvider = async (tokensEstimate) => {
  const response = await fetch('http://127.0.0.1:5050/api/choose', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ tokens_estimate: tokensEstimate })
  });

  return response.json();
};

// Register usage
const registerUsage = async (provider, tokensUsed, success) => {
  await fetch('http://127.0.0.1:5050/api/use', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ provider, tokens_used: tokensUsed, success })
  });
};
"""
JS_DRIVER = """
chooseProvider(700).then(async (r) => {
  console.log(JSON.stringify(r));
  await registerUsage(r.provider, 700, true);
});
"""
FIRST_KEY = {"provider": "claude", "api_key": "sk-ant-xxx...", "quota_total": 500000}


def here(text: str, server: Served) -> str:
    return text.replace(SEED_URL, server.url)


def run_curl(cmd: str, server: Served, token: str | None = None) -> dict:
    cmd = here(cmd, server)
    if token:
        cmd += f' -H "Authorization: Bearer {token}"'
    out = subprocess.run(["bash", "-c", cmd + " -s"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_status(body: dict) -> None:
    assert body["success"] is True
    assert isinstance(body["providers"], list)
    for p in body["providers"]:
        for field in ("provider", "quota_total", "quota_used", "remaining", "used_pct", "state"):
            assert field in p, field
        assert p["state"] in STATES
        assert isinstance(p["keys"], list)
        assert p["quota_total"] == sum(k["quota_total"] for k in p["keys"])
    assert set(body["health"]) >= {"status", "message"}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(CONFIG, tmp_path_factory.mktemp("s000") / "home", "--trust-local") as s:
        yield s


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(CONFIG, tmp_path_factory.mktemp("s000sec") / "home") as s:
        assert s.admin_token and s.admin_token.startswith("qfadm-")
        yield s


def test_the_seed_walkthrough_runs_verbatim_in_trust_local_mode(local: Served) -> None:
    status, added = local.call("POST", "/api/add_key", FIRST_KEY)
    assert status == 200, added
    assert added["success"] is True and added["provider"] == "claude"
    assert added["api_key"] != FIRST_KEY["api_key"]  # masked in every answer but choose

    st = run_curl(CURL_STATUS, local)
    check_status(st)
    claude = next(p for p in st["providers"] if p["provider"] == "claude")
    assert (claude["quota_total"], claude["quota_used"], claude["remaining"]) == (500000, 0, 500000)
    assert (claude["used_pct"], claude["state"]) == (0.0, "ok")
    assert st["health"] == {"status": "healthy", "message": "All providers operational"}

    chosen = run_curl(CURL_CHOOSE, local)
    assert chosen["success"] is True
    assert chosen["provider"] == "claude"
    assert chosen["api_key"] == "sk-ant-xxx..."  # the whole key: trust-local callers are authorised
    assert chosen["remaining_after"] == 499000
    assert chosen["reason"] == "optimal_selection"
    assert chosen["key_id"] == "claude-1"

    used = run_curl(CURL_USE, local)
    assert used == {
        "success": True, "message": "Usage registered for claude", "tokens_used": 1500,
        "provider": "claude", "key_id": "claude-1", "settled_reservation": True,
    }  # fmt: skip
    claude = next(p for p in run_curl(CURL_STATUS, local)["providers"] if p["provider"] == "claude")
    assert (claude["quota_used"], claude["remaining"], claude["reserved"]) == (1500, 498500, 0)
    assert claude["used_pct"] == 0.3


def test_the_python_agent_example_runs_verbatim(local: Served, tmp_path: Path) -> None:
    local.call("POST", "/api/add_key", FIRST_KEY)
    before = local.call("GET", "/api/history?limit=50")[1]["count"]
    script = tmp_path / "agent.py"
    script.write_text(here(PYTHON_AGENT, local))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # the success branch prints nothing
    status, hist = local.call("GET", "/api/history?limit=50")
    assert status == 200 and hist["count"] == before + 1
    row = hist["history"][0]
    assert (row["provider"], row["tokens_used"], row["success"]) == ("claude", 2000, True)
    assert set(row) >= {"id", "provider", "timestamp", "tokens_used", "success", "reason"}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_example_runs_verbatim(local: Served, tmp_path: Path) -> None:
    local.call("POST", "/api/add_key", FIRST_KEY)
    script = tmp_path / "agent.mjs"
    script.write_text(here(JS_AGENT, local) + JS_DRIVER)
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    chosen = json.loads(out.stdout)
    assert chosen["success"] is True and chosen["provider"] == "claude"
    assert set(chosen) >= {"success", "provider", "api_key", "remaining_after", "reason"}
    row = local.call("GET", "/api/history?limit=1")[1]["history"][0]
    assert (row["provider"], row["tokens_used"]) == ("claude", 700)


def test_force_clear_reset_history_and_health_envelopes(local: Served) -> None:
    local.call("POST", "/api/add_key", FIRST_KEY)
    status, gem = local.call("POST", "/api/add_key", {"provider": "gemini", "api_key": "AIza-test-1111", "quota_total": 1000})  # fmt: skip
    assert status == 200 and gem["provider"] == "gemini"
    status, forced = local.call("POST", "/api/force_provider", {"provider": "gemini"})
    assert status == 200 and forced["success"] is True and forced["forced_provider"] == "gemini"
    st = local.call("GET", "/api/status")[1]
    assert st["forced_provider"] == "gemini"
    chosen = local.call("POST", "/api/choose", {"tokens_estimate": 10})[1]
    assert (chosen["provider"], chosen["reason"]) == ("gemini", "forced_provider")
    local.call("POST", "/api/use", {"provider": "gemini", "tokens_used": 10, "success": True})
    status, cleared = local.call("POST", "/api/clear_forced")
    assert status == 200 and cleared["success"] is True
    assert local.call("GET", "/api/status")[1]["forced_provider"] is None

    local.call("POST", "/api/use", {"provider": "gemini", "tokens_used": 990, "success": False, "reason": "timeout"})  # fmt: skip
    gemini = next(
        p for p in local.call("GET", "/api/status")[1]["providers"] if p["provider"] == "gemini"
    )
    assert (gemini["state"], gemini["remaining"]) == ("depleted", 0)
    row = local.call("GET", "/api/history?limit=1")[1]["history"][0]
    assert (row["success"], row["reason"]) == (False, "timeout")
    status, reset = local.call("POST", "/api/reset_quota", {"provider": "gemini"})
    assert status == 200 and reset["success"] is True
    gemini = next(
        p for p in local.call("GET", "/api/status")[1]["providers"] if p["provider"] == "gemini"
    )
    assert (gemini["state"], gemini["quota_used"], gemini["remaining"]) == ("ok", 0, 1000)

    status, health = local.call("GET", "/api/health")
    assert status == 200 and health["success"] is True and "status" in health
    status, hist = local.call("GET", "/api/history?limit=2")
    assert status == 200 and hist["success"] is True and len(hist["history"]) == 2


def test_states_follow_the_seed_thresholds_and_choose_skips_depleted(local: Served) -> None:
    local.call("POST", "/api/add_key", {"provider": "openai", "api_key": "sk-states-0001", "quota_total": 1000})  # fmt: skip
    local.call("POST", "/api/reset_quota", {"provider": "openai"})

    def state() -> str:
        rows = local.call("GET", "/api/status")[1]["providers"]
        return next(p["state"] for p in rows if p["provider"] == "openai")

    seen = []
    for used in (799, 1, 99, 1, 99, 1):  # 79.9 %, 80 %, 89.9 %, 90 %, 99.9 %, 100 %
        local.call("POST", "/api/use", {"provider": "openai", "tokens_used": used, "success": True})
        seen.append(state())
    assert seen == ["ok", "warning", "warning", "critical", "critical", "depleted"]
    local.call("POST", "/api/force_provider", {"provider": "openai"})
    chosen = local.call("POST", "/api/choose", {"tokens_estimate": 1})[1]
    assert chosen["provider"] != "openai"  # forced but depleted: the next best is used
    local.call("POST", "/api/use", {"reservation_id": chosen["reservation_id"], "provider": chosen["provider"], "tokens_used": 1})  # fmt: skip
    local.call("POST", "/api/clear_forced")


def test_several_keys_choose_holds_a_reservation_that_use_settles_or_time_expires(
    local: Served,
) -> None:
    for secret in ("gsk-multi-0001", "gsk-multi-0002"):
        status, _ = local.call("POST", "/api/add_key", {"provider": "groq", "api_key": secret, "quota_total": 10_000})  # fmt: skip
        assert status == 200
    local.call("POST", "/api/force_provider", {"provider": "groq"})
    try:
        first = local.call("POST", "/api/choose", {"tokens_estimate": 4000})[1]
        second = local.call("POST", "/api/choose", {"tokens_estimate": 4000})[1]
        assert first["key_id"] != second["key_id"]  # the first reservation moved the headroom
        groq = next(
            p for p in local.call("GET", "/api/status")[1]["providers"] if p["provider"] == "groq"
        )
        assert groq["reserved"] == 8000 and groq["quota_total"] == 20_000
        assert {k["key_id"] for k in groq["keys"]} == {first["key_id"], second["key_id"]}
        # settle by key_id
        used = local.call("POST", "/api/use", {"provider": "groq", "key_id": first["key_id"], "tokens_used": 100})[1]  # fmt: skip
        assert used["settled_reservation"] is True and used["key_id"] == first["key_id"]
        groq = next(
            p for p in local.call("GET", "/api/status")[1]["providers"] if p["provider"] == "groq"
        )
        assert (groq["reserved"], groq["quota_used"]) == (4000, 100)
        time.sleep(3.3)  # choose_ttl_s: 3 → the second reservation expires and is released
        groq = next(
            p for p in local.call("GET", "/api/status")[1]["providers"] if p["provider"] == "groq"
        )
        assert groq["reserved"] == 0
    finally:
        local.call("POST", "/api/clear_forced")


def test_keys_survive_a_restart_encrypted_at_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = "sk-ant-api03-restart-secret-x9Qf"
    with served(CONFIG, home, "--trust-local") as s:
        s.call(
            "POST", "/api/add_key", {"provider": "claude", "api_key": secret, "quota_total": 5000}
        )
        s.call("POST", "/api/use", {"provider": "claude", "tokens_used": 1234})
        s.call("POST", "/api/force_provider", {"provider": "claude"})
    assert secret.encode() not in (home / "quotaflow.db").read_bytes()
    with served(CONFIG, home, "--trust-local") as s:
        assert "admin token created" not in s.proc.output  # created on the first start only
        assert "qfadm-" not in s.proc.output  # and never printed
        st = s.call("GET", "/api/status")[1]
        claude = next(p for p in st["providers"] if p["provider"] == "claude")
        assert (claude["quota_total"], claude["quota_used"]) == (5000, 1234)
        assert claude["keys"][0]["api_key"] == "sk-ant-…x9Qf"
        assert st["forced_provider"] == "claude"
        assert s.call("POST", "/api/choose", {"tokens_estimate": 1})[1]["api_key"] == secret


# -- the default mode: the admin token is required -------------------------------------
MUTATING = [
    ("/api/add_key", FIRST_KEY),
    ("/api/choose", {"tokens_estimate": 1000}),
    ("/api/use", {"provider": "claude", "tokens_used": 1, "success": True}),
    ("/api/force_provider", {"provider": "claude"}),
    ("/api/clear_forced", None),
    ("/api/reset_quota", {"provider": "claude"}),
]


@pytest.mark.parametrize(("path", "body"), MUTATING)
def test_mutating_calls_without_the_admin_token_get_401(
    secured: Served, path: str, body: dict | None
) -> None:
    status, answer = secured.call("POST", path, body)
    assert status == 401, answer
    assert answer["success"] is False and "token" in answer["message"]
    status, answer = secured.call("POST", path, body, token="qfadm-wrong-token-000000000000")
    assert status == 401 and answer["success"] is False


def test_the_seed_examples_work_with_the_admin_token_added(secured: Served) -> None:
    token = secured.admin_token
    assert secured.call("GET", "/api/status")[0] == 200  # reads stay open
    status, added = secured.call("POST", "/api/add_key", FIRST_KEY, token=token)
    assert status == 200 and added["success"] is True
    chosen = run_curl(CURL_CHOOSE, secured, token)
    assert chosen["success"] is True and chosen["api_key"] == "sk-ant-xxx..."
    used = run_curl(CURL_USE, secured, token)
    assert used["success"] is True and used["message"] == "Usage registered for claude"
    check_status(run_curl(CURL_STATUS, secured))


def test_trust_local_is_refused_beyond_loopback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "q.yaml").write_text(CONFIG)
    out = subprocess.run(
        [sys.executable, "-m", "quotaflow", "serve", "--config", str(home / "q.yaml"), "--home",
         str(home), "--port", "0", "--host", "0.0.0.0", "--trust-local"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert out.returncode != 0
    assert "loopback" in out.stderr
