"""Bad input to /v1 gets OpenAI-shaped 4xx errors before anything is reserved or sent upstream."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows

pytestmark = pytest.mark.e2e


def _raw(
    url: str, data: bytes, path: str = "/v1/chat/completions", method: str = "POST"
) -> tuple[int, dict]:
    req = urllib.request.Request(
        url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


MSG = [{"role": "user", "content": "hi"}]
CASES = [
    (b"{not json", 400, None),
    (b"", 400, None),
    (b"[1, 2]", 400, None),
    (json.dumps({"messages": MSG}).encode(), 400, "model"),
    (json.dumps({"model": 5, "messages": MSG}).encode(), 400, "model"),
    (json.dumps({"model": "gpt-4o-mini"}).encode(), 400, "messages"),
    (json.dumps({"model": "gpt-4o-mini", "messages": []}).encode(), 400, "messages"),
    (
        json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}
        ).encode(),
        400,
        "messages[0].role",
    ),
    (
        json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 7}]}).encode(),
        400,
        "messages[0].content",
    ),
    (
        json.dumps({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": -5}).encode(),
        400,
        "max_tokens",
    ),
    (
        json.dumps({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": "ten"}).encode(),
        400,
        "max_tokens",
    ),
    (
        json.dumps({"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 10**12}).encode(),
        400,
        "max_tokens",
    ),
    (
        json.dumps({"model": "gpt-4o-mini", "messages": MSG, "temperature": "hot"}).encode(),
        400,
        "temperature",
    ),
    (
        json.dumps({"model": "gpt-4o-mini", "messages": MSG, "stream": "yes"}).encode(),
        400,
        "stream",
    ),
    (
        json.dumps({"model": "gpt-4o-mini", "messages": MSG, "complexity": "medium"}).encode(),
        400,
        "complexity",
    ),
    (
        json.dumps(
            {"model": "gpt-4o-mini", "messages": MSG, "preferred_provider": "nobody"}
        ).encode(),
        400,
        "preferred_provider",
    ),
    (json.dumps({"model": "no-such-model", "messages": MSG}).encode(), 404, "model"),
]


def test_bad_requests_get_openai_errors_and_reserve_nothing(fresh_fake: Proc, home: Path) -> None:
    cfg = f"""
server: {{max_body_bytes: 20000}}
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}}}]
"""
    with gateway(cfg, home) as gw:
        for data, status, param in CASES:
            got, body = _raw(gw.url, data)
            assert got == status, (data, body)
            err = body["error"]
            assert set(err) >= {"message", "type", "param", "code"}, body
            assert err["message"]
            if param is not None:
                assert err["param"] == param, (data, err)
        got, body = _raw(
            gw.url,
            json.dumps(
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 30000}]}
            ).encode(),
        )
        assert got == 413 and body["error"]["code"] == "payload_too_large"
        got, body = _raw(gw.url, b"", path="/v1/nothing-here")
        assert got == 404 and "no such endpoint" in body["error"]["message"]
        got, body = _raw(gw.url, b"", path="/v1/chat/completions", method="GET")
        assert got == 405
    assert ledger_rows(home) == []
    assert fake_control(fresh_fake, "/_fake/stats", method="GET")["requests"] == 0


def test_unknown_config_field_is_refused_naming_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "providers:\n  - name: openai\n    keys: [{secret: x, limits: [{window: fortnight, amount: 5}]}]\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "quotaflow", "serve", "--config", str(cfg), "--port", "0", "--home", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    assert "providers.0.keys.0.limits.0.window" in r.stderr
    assert "fortnight" in r.stderr
    assert "Traceback" not in r.stderr
