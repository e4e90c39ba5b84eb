"""A provider that quotes the key in its errors must not make the gateway leak it anywhere.

The upstream answers 400, 401, 429 and 500 (and an error event inside an opened stream)
with messages quoting the key whole and a 12-character piece of it. After plain and
streamed ``/v1`` calls, every ``/v1`` answer, every ``/api`` read, the dashboard's data,
the server's log and every file of the data folder (the SQLite WAL included) are searched
for any 8-character piece of any key.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from quotaflow.web.api.openapi_spec import build_spec
from tests.e2e_helpers import Served, served
from tests.hostile_upstream import hostile_upstream

pytestmark = pytest.mark.e2e

SECRETS = {  # env name -> (fake) key; each answers with its status
    "LEAK_K400": ("sk-q4Zr8LmXw2Pd7Tn1Vb6Hs3Jc", 400),
    "LEAK_K401": ("sk-Gm2Yt9Kq4Wx7Nc1Rz5Lp8Fd3", 401),
    "LEAK_K429": ("sk-Ub7Ev3Ho9Sj2Ia6Dk4Mf1Qw8", 429),
    "LEAK_K500": ("sk-Xn5Cr1Tb8Pz3Ly7Gh2Vk9Oj4", 500),
}
STREAM_SECRET = ("LEAK_KSSE", "sk-Wd6Fq2Ja9Hm4Ks1Ze7Np3Rt5")


def pieces(secret: str, width: int = 8) -> set[str]:
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}


def leaks(text: str | bytes, secrets: list[str]) -> list[str]:
    blob = text if isinstance(text, str) else text.decode("latin-1")
    return sorted({p for s in secrets for p in pieces(s) if p in blob})


def raw_get(url: str, token: str | None) -> str:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.headers) + resp.read().decode()
    except urllib.error.HTTPError as err:
        return str(err.headers) + err.read().decode()


def test_a_key_quoted_by_the_upstream_leaks_nowhere(tmp_path: Path) -> None:
    secrets = [s for s, _ in SECRETS.values()] + [STREAM_SECRET[1]]
    with hostile_upstream() as up:
        for secret, status in SECRETS.values():
            up.quote_status[secret] = status
        up.quote_status[STREAM_SECRET[1]] = 500
        up.quote_in_stream.add(STREAM_SECRET[1])
        keys = "\n".join(
            # the 400 (which ends a request's fallback) is tried last
            f"      - {{id: {env.lower()}, secret: '${{{env}}}', priority: {9 if env == 'LEAK_K400' else 0}}}"
            for env in [*SECRETS, STREAM_SECRET[0]]
        )
        cfg = f"""
settings: {{strategy: priority, max_wait_s: 0, max_attempts: 5, failure_threshold: 100}}
providers:
  - name: openai
    base_url: {up.url}/v1
    keys:
{keys}
agents:
  - name: bot
"""
        env = {env: s for env, (s, _) in SECRETS.items()} | {STREAM_SECRET[0]: STREAM_SECRET[1]}
        with served(cfg, tmp_path / "home", env=env) as s:
            seen = scan_everything(s)
    found = leaks(seen, secrets)
    assert found == [], f"pieces of provider keys leaked: {found}"


def scan_everything(s: Served) -> str:
    """Drive plain and streamed calls into every key, then gather everything readable."""
    out: list[str] = []
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5, "user": "bot"}  # fmt: skip
    for i in range(6):
        for stream in (False, True):
            req = urllib.request.Request(
                s.url + "/v1/chat/completions",
                data=json.dumps({**chat, "stream": stream, "seed": i}).encode(),
                headers={"content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    out.append(str(resp.headers) + resp.read().decode())
            except urllib.error.HTTPError as err:
                out.append(str(err.headers) + err.read().decode())
    spec = build_spec("x")["paths"]
    for path, ops in spec.items():
        if "get" not in ops or path == "/api/events":
            continue
        url = s.url + path.replace("{ai_name}", "bot").replace("{name}", "bot")
        for token in (None, s.admin_token):
            out.append(raw_get(url, token))
    out.append(raw_get(s.url + "/api/history?limit=1000", s.admin_token))
    out.append(s.proc.output)
    s.proc.stop()  # the files as a killed-or-stopped server leaves them, WAL included
    for f in sorted(s.home.rglob("*")):
        if f.is_file():
            out.append(f.read_bytes().decode("latin-1"))
    return "\n".join(out)
