"""A new user's first contact: keys from the environment alone, through the real server.

No configuration file: the gateway must serve what the provider serves (no hidden free-tier
caps on a paid key), say at start-up what it will enforce, and apply a free plan's limits
only when told so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.procs import Proc, ledger_rows, running, wait_for
from tests.e2e_helpers import fake_upstream, served

pytestmark = pytest.mark.e2e

# Variables a developer's shell may hold that would add providers to an env-only start.
_PROVIDER_VARS = re.compile(r"_(API_?KEY(_\d+)?|KEY|PLAN|LIMIT|MONTHLY_LIMIT|BASE_URL)$")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _PROVIDER_VARS.search(k)}
    return {**env, **extra}


@contextlib.contextmanager
def serve_from_env(tmp_path: Path, env: dict[str, str]) -> Iterator[Proc]:
    """``quotaflow serve`` in a folder without quotaflow.yaml: keys from ``env`` only."""
    home = tmp_path / "home"
    args = ["serve", "--port", "0", "--home", str(home)]
    with running(args, ready="serving on", env=env, cwd=tmp_path) as p:
        yield p


def admin_token(p: Proc) -> str:
    """The admin token the server created for the operator in its data folder."""
    home = Path(p.popen.args[p.popen.args.index("--home") + 1])  # type: ignore[union-attr]
    return (home / "admin_token").read_text().strip()


def get_json(p: Proc, path: str) -> Any:
    req = urllib.request.Request(
        p.url + path, headers={"authorization": f"Bearer {admin_token(p)}"}
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        return json.loads(resp.read())


def client(p: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=p.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_a_paid_key_serves_60000_tokens_with_no_configuration(tmp_path: Path) -> None:
    prompt = "word " * 4000  # about 5,000 prompt tokens a request
    with fake_upstream() as fake:
        env = clean_env(OPENAI_API_KEY="sk-paid-key-0001", OPENAI_BASE_URL=fake.url + "/v1")
        with serve_from_env(tmp_path, env) as gw, client(gw) as c:
            served = 0
            for _ in range(13):
                resp = c.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
                )
                assert resp.usage is not None
                served += resp.usage.total_tokens
            assert served >= 60_000
            # Start-up said what it enforces: nothing, for a paid key.
            assert wait_for(lambda: any("openai key openai-1" in ln for ln in gw.lines))
            line = next(ln for ln in gw.lines if "openai key openai-1" in ln)
            assert "paid plan, no limit" in line
            assert "sk-paid" not in gw.output
            key = get_json(gw, "/api/status")["providers"][0]["keys"][0]
            assert (key["plan"], key["quota_metric"], key["limits"]) == ("paid", None, [])
            # What the provider's rate-limit headers announced is shown as learned.
            assert [x["metric"] for x in key["learned_limits"]] == ["requests", "tokens"]
            assert key["limits_summary"].startswith("openai key openai-1: paid plan, 1,000,000")
            assert key["limits_summary"].endswith("(learned)")


def test_groq_plan_free_applies_the_free_tier_and_status_counts_requests(
    tmp_path: Path,
) -> None:
    with fake_upstream() as fake:
        env = clean_env(
            GROQ_API_KEY="gsk-free-key-0001", GROQ_BASE_URL=fake.url + "/v1", GROQ_PLAN="free"
        )
        with serve_from_env(tmp_path, env) as gw, client(gw) as c:
            assert wait_for(lambda: any("groq key groq-1" in ln for ln in gw.lines))
            line = next(ln for ln in gw.lines if "groq key groq-1" in ln)
            assert "free plan, 14,400 requests a day (free-plan preset)" in line
            for _ in range(3):
                c.chat.completions.create(
                    model="llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}]
                )
            row = get_json(gw, "/api/status")["providers"][0]
            assert (row["quota_metric"], row["quota_total"], row["quota_used"]) == (
                "requests",
                14_400,
                3,
            )
            assert row["keys"][0]["limits"][0]["source"] == "free-plan preset"


def test_any_model_a_provider_serves_passes_through(tmp_path: Path) -> None:
    with fake_upstream() as fake:
        env = clean_env(OPENAI_API_KEY="sk-paid-key-0001", OPENAI_BASE_URL=fake.url + "/v1")
        with serve_from_env(tmp_path, env) as gw, client(gw) as c:
            for name in ("o3-mini", "openai/o3-mini"):
                raw = c.chat.completions.with_raw_response.create(
                    model=name, messages=[{"role": "user", "content": "hi"}]
                )
                assert raw.parse().model == "o3-mini"  # what the upstream was asked for
                assert raw.headers["x-quotaflow-provider"] == "openai"
            with pytest.raises(openai.NotFoundError) as info:
                c.chat.completions.create(
                    model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
                )
            message = str(info.value)
            assert "'claude-sonnet-4-5' is not served here" in message
            assert "openai: gpt-*, o1*, o3*" in message
            models = c.models.list()
            assert "gpt-4o-mini" in [m.id for m in models.data]
            # The SDK's retrieve: a catalog model, a name passed through, one served nowhere.
            one = c.models.retrieve("gpt-4o-mini")
            assert (one.id, one.owned_by) == ("gpt-4o-mini", "openai")
            assert c.models.retrieve("gpt-9-preview").owned_by == "openai"
            with pytest.raises(openai.NotFoundError) as missing:
                c.models.retrieve("claude-sonnet-4-5")
            assert "'claude-sonnet-4-5' is not served here" in str(missing.value)
            listed = get_json(gw, "/v1/models")
            assert listed["pass_through"]["providers"]["openai"][0] == "gpt-*"


def test_a_learned_rate_limit_switches_early_like_a_configured_one(tmp_path: Path) -> None:
    with fake_upstream("openai", "--rpm", "10") as fake:
        config = (
            "settings: {strategy: priority}\n"
            "providers:\n"
            f"  - {{name: openai, base_url: '{fake.url}/v1', keys: ["
            "{id: a, secret: sk-first-0001}, {id: b, secret: sk-second-0002, priority: 1}]}\n"
        )
        with served(config, tmp_path / "home") as gw, client(gw.proc) as c:
            keys = []
            for _ in range(10):
                raw = c.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
                keys.append(raw.headers["x-quotaflow-key"])
    # The provider announced 10 requests a minute: at 80 % of it the gateway moves on.
    assert keys[:8] == ["a"] * 8
    assert keys[8:] == ["b", "b"]


def test_a_dotenv_file_seed_003_variables_and_hints(tmp_path: Path) -> None:
    with fake_upstream() as fake:
        (tmp_path / ".env").write_text(
            "# seed 003's .env\n"
            "OPENAI_API_KEY=sk-from-dotenv-0001\n"
            "OPENAI_BASE_URL=http://127.0.0.1:9/v1\n"  # the real environment wins
            "OPENAI_MODEL=gpt-4.1\n"
            "OPENAI_MAX_TOKENS=5\n"
            "OPENAI_TEMPERATURE=0.7\n"
            "QUOTAFLOW_STRATEGY=priority\n"
            "CLAUDE_API_KEY=sk-ant-misnamed-0001\n"
            "OPENAI_API_KEY_1=sk-misnumbered-0001\n"
        )
        env = clean_env(OPENAI_BASE_URL=fake.url + "/v1")
        with serve_from_env(tmp_path, env) as gw, client(gw) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "hi"}]
            )
            resp = raw.parse()
            assert raw.headers["x-quotaflow-model"] == "gpt-4.1"  # OPENAI_MODEL
            assert resp.usage is not None and resp.usage.completion_tokens == 5  # _MAX_TOKENS
            assert wait_for(lambda: sum("hint:" in ln for ln in gw.lines) >= 2)
            hints = [ln for ln in gw.lines if ln.startswith("hint:")]
            assert any("CLAUDE_API_KEY" in h and "ANTHROPIC_API_KEY" in h for h in hints)
            assert any("OPENAI_API_KEY_1" in h and "OPENAI_API_KEY_2" in h for h in hints)
            assert "sk-ant-misnamed" not in gw.output
            assert get_json(gw, "/api/status")["providers"][0]["provider"] == "openai"


def test_an_empty_configuration_says_how_to_add_a_key(tmp_path: Path) -> None:
    with serve_from_env(tmp_path, clean_env()) as gw:
        assert wait_for(lambda: any("no provider key found" in ln for ln in gw.lines))
        line = next(ln for ln in gw.lines if "no provider key found" in ln)
        assert "OPENAI_API_KEY" in line and ".env" in line


def test_a_spent_daily_budget_says_when_it_frees_in_words(tmp_path: Path) -> None:
    config = (
        "providers:\n"
        "  - {name: openai, base_url: 'http://127.0.0.1:9/v1', keys: [{id: team-a, secret: sk-day-0001,"
        " limits: [{metric: tokens, window: day, amount: 100}]}]}\n"
    )
    with served(config, tmp_path / "home") as gw:
        status, _ = gw.admin("POST", "/api/use", {"provider": "openai", "tokens_used": 100})
        assert status == 200
        status, body = gw.admin("POST", "/api/choose", {"tokens_estimate": 10})
        assert status == 429
        assert "used up for good" not in body["message"]
        assert re.search(
            r"The first frees in (\d+h \d+m|\d+h|\d+m \d+s|\d+m|\d+s)\.", body["message"]
        )


def test_seed_001s_complexity_request_goes_to_the_tier_it_asks_for(tmp_path: Path) -> None:
    with fake_upstream("anthropic") as anthropic, fake_upstream("openai") as oai:
        config = (
            "settings: {strategy: headroom, preferred_providers: [anthropic]}\n"
            "providers:\n"
            f"  - {{name: anthropic, base_url: '{anthropic.url}', keys: [{{secret: sk-ant-0001}}]}}\n"
            f"  - {{name: openai, base_url: '{oai.url}/v1', keys: [{{secret: sk-oai-0001}}]}}\n"
        )
        with served(config, tmp_path / "home") as gw:

            def model_for(body: dict[str, Any]) -> str:
                req = urllib.request.Request(
                    gw.url + "/v1/chat/completions",
                    data=json.dumps(body).encode(),
                    headers={"content-type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status = resp.status
                    model = resp.headers["x-quotaflow-model"]
                assert status == 200
                return str(model)

            seed = {  # seed 001's example, verbatim
                "model": "claude-opus-4-5",
                "messages": [{"role": "user", "content": "Hello"}],
                "complexity": "simple",
            }
            # The cheapest model of the cheap tier, not the named one, not the preferred provider.
            assert model_for(seed) == "gpt-4o-mini"
            capable = model_for({**seed, "complexity": "complex"})
            assert capable in {"claude-sonnet-4-5", "claude-opus-4-5", "gpt-4o", "gpt-4.1"}
            assert model_for({k: v for k, v in seed.items() if k != "complexity"}) == (
                "claude-opus-4-5"
            )


def test_a_rejected_key_is_invalid_says_so_and_stays_so_after_a_restart(tmp_path: Path) -> None:
    dead = "sk-test-dead-key-00000000"
    home = tmp_path / "home"
    with fake_upstream("openai", "--invalid-key", dead) as fake:
        config = (
            "settings: {max_wait_s: 0}\n"
            f"providers:\n  - {{name: openai, base_url: '{fake.url}/v1', keys: [{{id: team-a, secret: {dead}}}]}}\n"
        )
        with served(config, home) as gw, client(gw.proc) as c:
            for _ in range(2):  # the 401 itself, then the key already known invalid
                with pytest.raises(openai.APIStatusError) as info:
                    c.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                    )
                assert info.value.status_code == 502  # not a retryable 429
                error = info.value.body
                assert isinstance(error, dict) and error["code"] == "upstream_key_invalid"
                assert "rejected" in error["message"] and dead not in error["message"]
            key = gw.admin("GET", "/api/status")[1]["providers"][0]["keys"][0]
            assert key["state"] == "invalid" and dead not in json.dumps(key)
            alerts = gw.admin("GET", "/api/token-usage/alerts")[1]
            assert "invalid" in json.dumps(alerts)
        with served(config, home) as gw:  # restarted on the same data folder
            row = gw.admin("GET", "/api/status")[1]["providers"][0]
            assert (row["state"], row["keys"][0]["state"]) == ("invalid", "invalid")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "quotaflow",
                "status",
                "--home",
                str(home),
                "--config",
                str(home / "quotaflow.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 1 and "INVALID" in run.stdout


def test_a_key_the_provider_says_is_empty_stays_depleted_after_a_restart(tmp_path: Path) -> None:
    """A key whose quota ran out at the provider is skipped until its window resets, a
    restart included: the first request after it goes to the other key, not to a refusal."""
    home = tmp_path / "home"
    small, big = "sk-test-small-quota-0001", "sk-test-big-quota-0002"
    with fake_upstream("openai", "--key", f"{small}=30", "--key", big) as fake:
        config = (
            "settings: {strategy: priority, max_wait_s: 0}\n"
            f"providers:\n  - {{name: openai, base_url: '{fake.url}/v1', keys: ["
            f"{{id: small, secret: {small}, limits: [{{metric: tokens, window: day, amount: 1000000}}]}},"
            f" {{id: big, secret: {big}, priority: 1}}]}}\n"
        )

        def ask(c: openai.OpenAI) -> tuple[str, str]:
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
            )
            return raw.headers["x-quotaflow-key"], raw.headers["x-quotaflow-attempts"]

        with served(config, home) as gw, client(gw.proc) as c:
            answers = [ask(c) for _ in range(4)]
            # small serves until the provider says it is empty, then big takes over.
            assert answers[0] == ("small", "1")
            assert ("big", "2") in answers and answers[-1] == ("big", "1")
            key = gw.admin("GET", "/api/status")[1]["providers"][0]["keys"][0]
            assert (key["available"], key["reason"]) == (False, "quota exhausted at the provider")
        with served(config, home) as gw, client(gw.proc) as c:  # restarted, same data folder
            key = gw.admin("GET", "/api/status")[1]["providers"][0]["keys"][0]
            assert (key["available"], key["reason"]) == (False, "quota exhausted at the provider")
            assert ask(c) == ("big", "1")  # no attempt spent on the empty key
            # An operator resets the provider's quota: the key is tried again, and again
            # after a restart (here the fake provider still finds it empty, and says so).
            status, _ = gw.admin("POST", "/api/reset_quota", {"provider": "openai"})
            assert status == 200
        refused = ledger_rows(home, "key_id = 'small' AND error_kind = 'quota_exhausted'")
        assert len(refused) == 1
        with served(config, home) as gw, client(gw.proc) as c:
            assert ask(c) == ("big", "2")
        refused = ledger_rows(home, "key_id = 'small' AND error_kind = 'quota_exhausted'")
        assert len(refused) == 2


def test_an_unpriced_model_stops_at_a_cost_limit(tmp_path: Path) -> None:
    with fake_upstream() as fake:
        config = (
            "settings: {max_wait_s: 0}\n"
            f"providers:\n  - {{name: openai, base_url: '{fake.url}/v1', keys: [{{id: team-a,"
            " secret: sk-cost-0001, limits: [{metric: cost, window: day, amount: 0.05}]}]}\n"
        )
        prompt = "word " * 4000  # ~5,000 prompt tokens: $0.0125 at gpt-4o's $2.5 per million
        with served(config, tmp_path / "home") as gw, client(gw.proc) as c:
            served_n = 0
            with pytest.raises(openai.RateLimitError):
                for _ in range(20):
                    c.chat.completions.create(
                        model="gpt-9-preview",  # in no price table: the highest openai price
                        messages=[{"role": "user", "content": prompt}],
                        max_tokens=50,
                    )
                    served_n += 1
            assert 1 <= served_n <= 4
            rows = ledger_rows(gw.home, "status = 'ok'")
            assert all(r["cost_usd"] > 0 for r in rows)
            assert all((r["detail"] or "").startswith("cost estimated") for r in rows)


def test_a_provider_with_no_price_at_all_still_stops_at_a_cost_limit(tmp_path: Path) -> None:
    """A provider of one's own (no preset, no priced model): its unpriced model is booked at
    the dearest price the tables list, not $0, so its cost limit holds."""
    with fake_upstream() as fake:
        config = (
            "settings: {max_wait_s: 0}\n"
            f"providers:\n  - {{name: inhouse, protocol: openai, base_url: '{fake.url}/v1',"
            " models: [inhouse-model], keys: [{id: own, secret: sk-own-0001,"
            " limits: [{metric: cost, window: day, amount: 2.0}]}]}\n"
        )
        prompt = "word " * 2000  # ~2,500 prompt tokens: ~$0.4 a request at the dearest price
        with served(config, tmp_path / "home") as gw, client(gw.proc) as c:
            served_n = 0
            with pytest.raises(openai.RateLimitError):
                for _ in range(30):
                    c.chat.completions.create(
                        model="inhouse-model",
                        messages=[{"role": "user", "content": prompt}],
                        max_tokens=50,
                    )
                    served_n += 1
            assert 1 <= served_n <= 6
            rows = ledger_rows(gw.home, "status = 'ok'")
            assert len(rows) == served_n
            assert all(r["cost_usd"] > 0 for r in rows)
            assert sum(r["cost_usd"] for r in rows) <= 2.0


def test_unpriced_refuse_refuses_a_model_with_no_known_price(tmp_path: Path) -> None:
    with fake_upstream() as fake:
        config = (
            "settings: {unpriced: refuse}\n"
            f"providers:\n  - {{name: openai, base_url: '{fake.url}/v1', keys: [{{secret: sk-r-0001}}]}}\n"
        )
        with served(config, tmp_path / "home") as gw, client(gw.proc) as c:
            with pytest.raises(openai.BadRequestError) as info:
                c.chat.completions.create(
                    model="gpt-9-preview", messages=[{"role": "user", "content": "hi"}]
                )
            assert isinstance(info.value.body, dict)
            assert info.value.body["code"] == "unpriced_model"
            ok = c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert ok.choices
