"""``quotaflow.Client`` against a real server process (seed 000's advisory API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from quotaflow import Client, ClientError
from tests.e2e.procs import Proc, fake_provider, gateway


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    home = tmp_path_factory.mktemp("client")
    with fake_provider("openai") as fake:
        cfg = {"providers": [{
            "name": "claude", "protocol": "openai", "base_url": fake.url + "/v1", "models": ["m1"],
            "keys": [{"id": "claude-1", "secret": "sk-ant-secret-0001"}],
            "key_limits": [{"metric": "tokens", "window": "once", "amount": 500000}],
        }]}  # fmt: skip
        with gateway(yaml.safe_dump(cfg), Path(home)) as gw:
            yield gw, (Path(home) / "admin_token").read_text().strip()


def used(client: Client) -> float:
    return float(client.status()["providers"][0]["quota_used"])


def test_lease_reports_usage_when_the_block_ends(server: tuple[Proc, str]) -> None:
    proc, token = server
    client = Client(proc.url, token=token)
    before = used(client)
    with client.choose(tokens_estimate=2000) as lease:
        assert lease.provider == "claude"
        assert lease.api_key == "sk-ant-secret-0001"
        assert lease.reservation_id
        lease.tokens_used = 1500
    assert lease.reported
    assert used(client) == before + 1500
    history = client.history(limit=1)
    assert history[0]["tokens_used"] == 1500


def test_an_exception_reports_a_failure_and_propagates(server: tuple[Proc, str]) -> None:
    proc, token = server
    client = Client(proc.url, token=token)
    with pytest.raises(RuntimeError, match="upstream broke"), client.choose(tokens_estimate=100):
        raise RuntimeError("upstream broke")
    last = client.history(limit=1)[0]
    assert last["success"] is False
    assert "upstream broke" in (last.get("reason") or "")


def test_explicit_report_and_refusals(server: tuple[Proc, str]) -> None:
    proc, token = server
    client = Client(proc.url, token=token)
    lease = client.choose(tokens_estimate=10)
    assert lease.report(tokens_used=7)["tokens_used"] == 7
    with pytest.raises(ClientError, match="already reported"):
        lease.report(1)
    with pytest.raises(ClientError) as bad:
        client.choose(tokens_estimate=900_000)
    assert bad.value.status == 429
    with pytest.raises(ClientError) as anon:
        Client(proc.url, token="qfadm-wrong").add_key("claude", "sk-x", 5)
    assert anon.value.status == 401
    with pytest.raises(ClientError, match="cannot reach"):
        Client("http://127.0.0.1:9").status()
