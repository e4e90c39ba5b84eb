"""Who may read what, through the real server: exposed binds, names, origins, headers, files.

* Beyond loopback every ``/api`` read but ``/api/health`` (and ``/livez``, ``/readyz``)
  needs a credential, and an agent key sees only its own rows.
* Naming an agent that has a key (``X-Quotaflow-Agent`` or ``user``) needs that key;
  ``user`` is validated before it reaches the ledger.
* CORS answers the server's own origin and the configured ones only, in every mode.
* Secrets are never cached, failed admin tokens are throttled per client, a wrong admin
  token on an open read counts as none, and ``Server`` names no versions.
* The data folder is 0700 and its files 0600; a wider existing folder is warned about.
"""

from __future__ import annotations

import os
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import ledger_rows
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e

BOT, OTHER = "qf-bot-access-rules-key-0001", "qf-other-access-rules-key-002"
PROVIDER_SECRET = "sk-access-rules-SECRET-0001"
READS = ["/api/status", "/api/history", "/api/token-usage/summary", "/api/token-usage/ai/bot",
         "/api/token-usage/provider-status", "/api/token-usage/provider-status/bot",
         "/api/token-usage/emergency-status", "/api/token-usage/alerts",
         "/api/token-usage/history/bot", "/api/model-stats", "/api/alerts",
         "/api/session-summary"]  # fmt: skip


def config(url: str, extra: str = "") -> str:
    return f"""
settings: {{max_wait_s: 0}}
server: {{cors_origins: ["https://ops.example"]{extra}}}
providers:
  - name: openai
    base_url: {url}/v1
    keys: [{{id: openai-1, secret: {PROVIDER_SECRET}, limits: [{{metric: tokens, window: day, amount: 1000000}}]}}]
agents:
  - name: bot
    key: {BOT}
    budgets: [{{metric: tokens, window: day, amount: 100000}}]
  - name: other
    key: {OTHER}
"""


def headers_of(s: Served, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:  # fmt: skip
    req = urllib.request.Request(s.url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with fake_upstream("openai") as f:
        yield f.url


@pytest.fixture(scope="module")
def exposed(fake: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("exposed") / "home"
    # the data folder inside: one the server creates (the helper's holds the YAML)
    with served(config(fake), home, "--host", "0.0.0.0", "--home", str(home / "data")) as s:
        s.home = home / "data"
        s.admin_token = (s.home / "admin_token").read_text().strip()
        yield s


@pytest.fixture(scope="module")
def local(fake: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("local") / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # wider than it should be: warned about at start
    with served(config(fake), home) as s:
        yield s


def chat(s: Served, token: str | None = None, **extra: object) -> tuple[int, object]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}  # fmt: skip
    return s.call(
        "POST", "/v1/chat/completions", {**body, **extra.pop("body", {})}, token=token, **extra
    )  # type: ignore[arg-type]


# -- 5: reads beyond loopback ----------------------------------------------------------
def test_reads_need_a_credential_beyond_loopback(exposed: Served) -> None:
    assert chat(exposed, BOT)[0] == 200 and chat(exposed, OTHER)[0] == 200
    for path in READS:
        status, body = exposed.call("GET", path)
        assert status == 401 and body["success"] is False, (path, body)
        assert exposed.call("GET", path, token=exposed.admin_token)[0] == 200, path
    assert exposed.call("GET", "/api/health")[0] == 200
    for path in ("/livez", "/readyz"):  # open (once they exist)
        assert exposed.call("GET", path)[0] != 401


def test_an_agent_key_sees_only_its_own_rows(exposed: Served) -> None:
    chat(exposed, BOT)
    chat(exposed, OTHER)
    status, body = exposed.call("GET", "/api/history?limit=1000", token=BOT)
    assert status == 200 and body["history"] and {r["agent"] for r in body["history"]} == {"bot"}
    everyone = exposed.call("GET", "/api/history?limit=1000", token=exposed.admin_token)[1]
    assert {r["agent"] for r in everyone["history"]} >= {"bot", "other"}
    for path in ("/api/token-usage/ai/other", "/api/token-usage/provider-status/other",
                 "/api/token-usage/history/other"):  # fmt: skip
        status, body = exposed.call("GET", path, token=BOT)
        assert status == 403 and body["success"] is False, path
        assert exposed.call("GET", path.replace("other", "bot"), token=BOT)[0] == 200
    summary = exposed.call("GET", "/api/token-usage/summary", token=BOT)[1]
    assert "other" not in str(summary) and "bot" in str(summary)
    agents = exposed.call("GET", "/api/token-usage/provider-status", token=BOT)[1]["agents"]
    assert list(agents) == ["bot"]


# -- 6: impersonation by name ----------------------------------------------------------
def test_naming_a_keyed_agent_needs_its_key(local: Served) -> None:
    for extra in ({"headers": {"x-quotaflow-agent": "bot"}}, {"body": {"user": "bot"}}):
        status, body = chat(local, **extra)
        assert status == 401, (extra, body)
    assert chat(local, local.admin_token, body={"user": "bot"})[0] == 200  # the admin may
    assert chat(local, body={"user": "alice@example.com"})[0] == 200  # no such agent: a label
    for bad in ("evil\r\nX-Injected: 1", "a" * 300, "tab\there"):
        status, body = chat(local, body={"user": bad})
        assert status == 400 and body["error"]["param"] == "user", bad
    agents = {r["agent"] for r in ledger_rows(local.home)}
    assert "alice@example.com" in agents and not any("\n" in a or len(a) > 128 for a in agents)


# -- 7: files at rest ------------------------------------------------------------------
def test_data_folder_and_files_are_private(local: Served, exposed: Served) -> None:
    chat(exposed, BOT)
    assert stat.S_IMODE(exposed.home.stat().st_mode) == 0o700
    files = [f for f in exposed.home.rglob("*") if f.is_file()]
    assert {f.name for f in files} >= {"quotaflow.db", "quotaflow.db-wal", "quotaflow.db-shm"}
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert "readable by other users" in local.proc.output and "chmod 700" in local.proc.output


# -- 8: CORS ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["default", "trust-local"])
def test_cors_answers_own_and_configured_origins_only(fake: str, tmp_path: Path, mode: str) -> None:  # fmt: skip
    extra = ("--trust-local",) if mode == "trust-local" else ()
    with served(config(fake), tmp_path / "home", *extra) as s:
        own = s.url.replace("127.0.0.1", "127.0.0.1")
        for origin, allowed in ((own, True), ("https://ops.example", True),
                                ("http://localhost:3000", False), ("http://127.0.0.1:1", False)):  # fmt: skip
            _, hdrs = headers_of(s, "GET", "/api/status", {"origin": origin})
            assert (hdrs.get("access-control-allow-origin") == origin) is allowed, origin
        status, _ = headers_of(s, "POST", "/api/keys/openai-1/reveal", {"origin": "http://localhost:3000"})  # fmt: skip
        assert status == 403


# -- 9: headers, throttling, wrong admin tokens ----------------------------------------
def test_secrets_are_not_cached_and_server_names_no_version(local: Served) -> None:
    t = local.admin_token
    status, hdrs = headers_of(local, "POST", "/api/keys/openai-1/reveal", {"authorization": f"Bearer {t}"})  # fmt: skip
    assert status == 200 and hdrs["cache-control"] == "no-store"
    for path in ("/api/status", "/v1/models", "/"):
        _, hdrs = headers_of(local, "GET", path, {})
        assert hdrs["server"] == "quotaflow", hdrs["server"]


def test_a_wrong_admin_token_on_an_open_read_counts_as_none(fake: str, tmp_path: Path) -> None:
    with served(config(fake), tmp_path / "home") as s:
        for path in ("/api/status", "/api/history", "/api/token-usage/summary"):
            status, body = s.call("GET", path, token="qfadm-not-the-right-one")
            assert status == 200, (path, body)
        assert s.call("POST", "/api/clear_forced", token="qfadm-not-the-right-one")[0] == 401


def test_failed_admin_tokens_are_throttled_and_logged_without_the_token(fake: str, tmp_path: Path) -> None:  # fmt: skip
    with served(config(fake), tmp_path / "home") as s:
        wrong = [f"qfadm-wrong-guess-{i:04d}-abcdefgh" for i in range(12)]
        codes = [s.call("POST", "/api/clear_forced", token=w)[0] for w in wrong]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
        assert s.call("POST", "/api/clear_forced", token=s.admin_token)[0] == 429  # this minute
        assert "admin token" in s.proc.output
        assert not any(w in s.proc.output for w in wrong)
