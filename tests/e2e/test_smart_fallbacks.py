"""Smart fallbacks across protocols, end to end (openai SDK → ``quotaflow serve`` → fakes):
a request one protocol cannot express moves to another protocol; content-filter fallback
routes never loop; a bad ``fallback_route`` is refused at load with the field named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from quotaflow.errors import ConfigError
from quotaflow.testing import config as make_config
from tests.e2e.procs import Proc, fake_control, fake_provider, gateway, ledger_rows

pytestmark = pytest.mark.e2e

KEY = "sk-smart-0001"


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Proc]]:
    with fake_provider("openai", "--key", KEY) as o, fake_provider("anthropic", "--key", KEY) as a:
        yield {"openai": o, "anthropic": a}


@pytest.fixture
def clean(fakes: dict[str, Proc]) -> dict[str, Proc]:
    for p in fakes.values():
        fake_control(p, "/_fake/reset")
        fake_control(p, "/_fake/faults", method="DELETE")
    return fakes


def config(fakes: dict[str, Proc], routes: str) -> str:
    return "\n".join([
        "settings: {strategy: priority, max_wait_s: 0, preferred_providers: []}",
        "providers:",
        "  - name: claude",
        "    protocol: anthropic",
        f"    base_url: {fakes['anthropic'].url}",
        "    priority: 0",
        "    models: [{name: claude-haiku-4-5, input: 1.0, output: 5.0}]",
        f"    keys: [{{id: c, secret: {KEY}, limits: []}}]",
        "  - name: oai",
        "    protocol: openai",
        f"    base_url: {fakes['openai'].url}/v1",
        "    priority: 1",
        "    models: [{name: gpt-4o-mini, input: 0.15, output: 0.6}]",
        f"    keys: [{{id: o, secret: {KEY}, limits: []}}]",
        routes,
    ]) + "\n"  # fmt: skip


ROUTES = """routes:
  - name: mixed
    deployments:
      - {provider: claude, model: claude-haiku-4-5}
      - {provider: oai, model: gpt-4o-mini}
  - name: a
    fallback_route: b
    deployments: [{provider: oai, model: gpt-4o-mini}]
  - name: b
    fallback_route: a
    deployments: [{provider: claude, model: claude-haiku-4-5}]
"""


def client(gw: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=20)


def test_unsupported_by_one_protocol_moves_to_another(clean: dict[str, Proc], home: Path) -> None:
    with gateway(config(clean, ROUTES), home) as gw, client(gw) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="mixed", messages=[{"role": "user", "content": "hi"}], max_tokens=5, n=2
        )
        assert raw.headers["x-quotaflow-provider"] == "oai"
        assert raw.headers["x-quotaflow-attempts"] == "2"
        # A plain request still prefers the anthropic deployment: nothing was held against it.
        plain = c.chat.completions.with_raw_response.create(
            model="mixed", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        assert plain.headers["x-quotaflow-provider"] == "claude"
        # Only anthropic deployments: the client learns which feature is unsupported.
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(
                model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], n=3
            )
        assert info.value.code == "unsupported_by_protocol"
        assert "n > 1" in info.value.message
    rows = ledger_rows(home)
    assert [(r["provider"], r["status"], r["error_kind"], r["requests"]) for r in rows] == [
        ("claude", "error", "unsupported", 0), ("oai", "ok", None, 1),
        ("claude", "ok", None, 1), ("claude", "error", "unsupported", 0),
    ]  # fmt: skip
    assert fake_control(clean["anthropic"], "/_fake/stats", method="GET")["requests"] == 1


def test_content_filter_fallback_routes_do_not_loop(clean: dict[str, Proc], home: Path) -> None:
    for p in clean.values():
        fake_control(p, "/_fake/faults", {"kind": "content_filter", "count": -1})
    with gateway(config(clean, ROUTES), home) as gw, client(gw) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="a", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        # a (openai: 400 content_filter) → b (anthropic: refusal); b's fallback is a, already
        # tried, so b's refusal is the answer, as is.
        assert raw.headers["x-quotaflow-route"] == "b"
        resp = raw.parse()
        assert resp.choices[0].finish_reason == "content_filter"
        assert not resp.choices[0].message.content
        with pytest.raises(openai.BadRequestError) as info:  # b first: a's 400 comes back
            c.chat.completions.create(
                model="b", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
        assert info.value.code == "content_filter"
    rows = ledger_rows(home)
    assert [(r["route"], r["provider"], r["status"], r["error_kind"]) for r in rows] == [
        ("a", "oai", "error", "content_filtered"), ("b", "claude", "ok", None),
        ("b", "claude", "error", "content_filtered"), ("a", "oai", "error", "content_filtered"),
    ]  # fmt: skip
    assert rows[2]["total_tokens"] > 0  # the refused answer was billed by the provider


@pytest.mark.parametrize(
    ("fallback", "message"),
    [("nowhere", "no such route"), ("r", "cannot fall back to itself")],
)
def test_bad_fallback_route_is_refused_at_load(fallback: str, message: str) -> None:
    data = {
        "providers": [{"name": "openai", "keys": [{"secret": "sk-x"}]}],
        "routes": [{"name": "r", "fallback_route": fallback,
                    "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}],
    }  # fmt: skip
    with pytest.raises(ConfigError, match=rf"routes\.0\.fallback_route: .*{message}"):
        make_config(data)
    data["routes"][0]["fallback_route"] = "gpt-4o"  # an implicit (model) route is fine
    assert make_config(data).routes["r"].fallback_route == "gpt-4o"
