"""What an agent key may do with seed 000's advisory API, through the real server.

An agent never receives a provider key (it could call the provider past every budget), and
it books usage only against its own open reservation, within what it reserved plus the
stated tolerance; the admin may do both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quotaflow.engine.catalog import mask_secret
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e

SECRET = "sk-authority-SECRET-0001"
BOT, OTHER = "qf-bot-authority-key-000001", "qf-other-authority-key-00002"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with fake_upstream("openai") as fake:
        cfg = f"""
settings: {{max_wait_s: 0}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys: [{{id: openai-1, label: team key, secret: {SECRET}, limits: [{{metric: tokens, window: day, amount: 1000000}}]}}]
agents:
  - name: bot
    key: {BOT}
  - name: other
    key: {OTHER}
"""
        with served(cfg, tmp_path_factory.mktemp("authority") / "home") as s:
            yield s


def used(s: Served) -> float:
    return s.call("GET", "/api/status")[1]["providers"][0]["quota_used"]


def test_an_agent_gets_a_label_and_a_reservation_never_the_key(server: Served) -> None:
    status, chosen = server.call("POST", "/api/choose", {"tokens_estimate": 10}, token=BOT)
    assert status == 200, chosen
    assert chosen["api_key"] == mask_secret(SECRET) and SECRET not in str(chosen)
    assert chosen["key_label"] == "team key" and chosen["reservation_id"]
    assert server.call("POST", "/api/use", {"reservation_id": chosen["reservation_id"], "tokens_used": 0}, token=BOT)[0] == 200  # fmt: skip
    status, chosen = server.call("POST", "/api/choose", {"tokens_estimate": 10}, token=server.admin_token)  # fmt: skip
    assert status == 200 and chosen["api_key"] == SECRET


def test_an_agent_books_only_against_its_own_reservation(server: Served) -> None:
    before = used(server)
    for body in ({"provider": "openai", "tokens_used": 100_000_000},
                 {"key_id": "openai-1", "tokens_used": 5}):  # fmt: skip
        status, out = server.call("POST", "/api/use", body, token=BOT)
        assert status == 403 and out["success"] is False, out
    _, mine = server.call("POST", "/api/choose", {"tokens_estimate": 100}, token=BOT)
    rid = mine["reservation_id"]
    status, out = server.call("POST", "/api/use", {"reservation_id": rid, "provider": "openai", "tokens_used": 50}, token=OTHER)  # fmt: skip
    assert status == 403, out  # not its reservation
    status, out = server.call("POST", "/api/use", {"reservation_id": rid, "provider": "openai", "tokens_used": 111}, token=BOT)  # fmt: skip
    assert status == 400 and "110" in out["message"], out  # 100 reserved + 10 %
    assert used(server) == before
    status, out = server.call("POST", "/api/use", {"reservation_id": rid, "provider": "openai", "tokens_used": 110}, token=BOT)  # fmt: skip
    assert status == 200 and out["settled_reservation"] is True, out
    assert used(server) == before + 110
    status, _ = server.call("POST", "/api/use", {"reservation_id": rid, "provider": "openai", "tokens_used": 1}, token=BOT)  # fmt: skip
    assert status in (400, 403)  # settled once
    # by provider alone: the agent's own oldest open reservation
    server.call("POST", "/api/choose", {"tokens_estimate": 20}, token=BOT)
    status, out = server.call("POST", "/api/use", {"provider": "openai", "tokens_used": 20}, token=BOT)  # fmt: skip
    assert status == 200 and out["settled_reservation"] is True, out
    # the admin may book anything
    status, _ = server.call("POST", "/api/use", {"provider": "openai", "tokens_used": 1000}, token=server.admin_token)  # fmt: skip
    assert status == 200 and used(server) == before + 1130
