"""What happened upstream is named for what it was: a 3xx from a provider is a 502 naming
the redirect (never relayed to the client as a 3xx), and a fallback key serves meanwhile."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, fake_control, gateway, ledger_rows

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "ECHO: ok"}]


def _cfg(fake: Proc, keys: int) -> str:
    rows = "\n".join(
        f"      - {{id: {name}, secret: {KEYS[i]}, priority: {i}, limits: []}}"
        for i, name in enumerate(["a", "b"][:keys])
    )
    return f"""
settings: {{strategy: priority}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys:
{rows}
"""


@pytest.mark.parametrize("stream", [False, True])
def test_a_redirect_is_a_502_naming_it(fresh_fake: Proc, home: Path, stream: bool) -> None:
    fake_control(fresh_fake, "/_fake/faults", {"kind": "redirect", "status": 302, "count": -1})
    with gateway(_cfg(fresh_fake, 1), home) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            out = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
            if stream:
                list(out)
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict)
    message = body["quotaflow"]["attempts"][0]["message"] if "quotaflow" in body else str(body)
    assert "redirect (HTTP 302 to https://login.example/)" in message, body
    assert [r["error_kind"] for r in ledger_rows(home)] == ["server_error"]


def test_a_redirecting_key_falls_back(fresh_fake: Proc, home: Path) -> None:
    fake_control(fresh_fake, "/_fake/faults", {"kind": "redirect", "key": KEYS[0], "count": -1})
    with gateway(_cfg(fresh_fake, 2), home) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        out = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        assert out.headers["x-quotaflow-key"] == "b"
        assert out.parse().choices[0].message.content == "ok"
