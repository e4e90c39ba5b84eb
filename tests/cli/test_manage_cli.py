"""``status``, ``keys``, ``reset``, ``alerts``, ``feedback`` and ``--help``: on the data folder
and against a running server, through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from quotaflow.cli.main import cli
from tests.cli.conftest import QF, row, write_ledger
from tests.e2e.procs import Proc, gateway

CONFIG = {
    "providers": [{
        "name": "groq", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m1"],
        "keys": [{"id": "groq-1", "secret": "gsk-aaaaaaaaaaaa1111"}],
        "key_limits": [{"metric": "tokens", "window": "once", "amount": 1000}],
    }]
}  # fmt: skip
COMMANDS = ["serve", "demo", "fake-provider", "status", "keys", "keys add", "keys list", "keys remove",
            "keys enable", "keys disable", "probe", "report", "forecast", "alerts", "reset", "feedback"]  # fmt: skip


def test_help_everywhere() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "quotaflow", "--help"], capture_output=True, text=True
    )
    assert top.returncode == 0 and "Exit codes" in top.stdout
    for cmd in COMMANDS:  # the same click objects, in-process: 16 subprocesses would be slow
        p = CliRunner().invoke(cli, [*cmd.split(), "--help"], prog_name="quotaflow")
        assert p.exit_code == 0, (cmd, p.output)
        assert "Usage: quotaflow " + cmd in p.output


def test_status_keys_alerts_reset_on_the_data_folder(qf: QF) -> None:
    qf.write_config(CONFIG)
    write_ledger(qf.home, [row(1.0, "groq-1", "groq", 950)])
    status = qf.inproc("status", "--json").json()
    (groq,) = status["providers"]
    assert (groq["quota_used"], groq["state"]) == (950, "critical")
    alerts = qf.inproc("alerts", "--json", "--check")
    assert alerts.code == 1  # --check: a quota is above an alert level
    assert alerts.json()["alerts"][0]["level_pct"] == 95.0
    added = qf.inproc(
        "keys", "add", "groq", "sk-newkey-123456789", "--quota", "5000", "--json"
    ).json()
    assert added["key_id"] == "groq-2" and added["api_key"] == "sk-n…6789"
    listed = qf.inproc("keys", "list")
    assert "sk-newkey-123456789" not in listed.out and "gsk-aaaaaaaaaaaa1111" not in listed.out
    assert "groq-2" in listed.out and "added" in listed.out
    assert qf.inproc("keys", "disable", "groq-2").code == 0
    keys = {k["key_id"]: k for k in qf.inproc("keys", "list", "--json").json()["keys"]}
    assert keys["groq-2"]["available"] is False and "operator" in keys["groq-2"]["reason"]
    assert qf.inproc("keys", "enable", "groq-2").code == 0
    assert qf.inproc("keys", "list", "--json").json()["keys"][1]["available"] is True
    assert qf.inproc("keys", "remove", "groq-1").code == 2  # a key of the config file
    assert qf.inproc("keys", "enable", "nope").code == 2
    assert qf.inproc("reset", "groq", "--json").json()["keys_reset"] == ["groq-1", "groq-2"]
    assert qf.inproc("status", "--json").json()["providers"][0]["quota_used"] == 0
    assert qf.inproc("alerts", "--check").code == 0
    assert qf.inproc("reset", "nope").code == 2
    assert qf.inproc("keys", "remove", "groq-2").code == 0
    assert [k["key_id"] for k in qf.inproc("keys", "list", "--json").json()["keys"]] == ["groq-1"]


def test_keys_add_without_quota_adds_a_key_with_no_quota_of_its_own(qf: QF) -> None:
    """Like POST /api/add_key without quota_total: a paid key, limited by the provider only."""
    qf.write_config(CONFIG)
    added = qf.inproc("keys", "add", "groq", "sk-paid-key-123456789", "--json")
    assert added.code == 0, added.err
    doc = added.json()
    assert (doc["key_id"], doc["quota_total"], doc["created"]) == ("groq-2", None, True)
    key = {k["key_id"]: k for k in qf.inproc("keys", "list", "--json").json()["keys"]}["groq-2"]
    assert (key["quota_metric"], key["limits"], key["available"]) == (None, [], True)
    assert "no limit" in qf.inproc("keys", "list").out
    text = qf.inproc("keys", "add", "groq", "sk-capped-key-12345678", "--quota", "700").out
    assert "groq-3" in text and "quota 700 tokens" in text
    assert "no quota of its own" in qf.inproc("keys", "add", "groq", "sk-paid-key-123456789").out
    for bad in ("0", "-5", "12.5"):
        run = qf.inproc("keys", "add", "groq", "sk-bad-key-12345678", "--quota", bad)
        assert run.code == 2 and "--quota" in run.err, bad


def test_a_changed_master_key_is_refused_in_one_line_with_what_to_do(qf: QF) -> None:
    """Keys added at runtime, then the data folder's master.key lost (or a replica started
    without the others' QUOTAFLOW_MASTER_KEY): every command refuses in one line, exit 2."""
    qf.write_config(CONFIG)
    no_env = {"QUOTAFLOW_MASTER_KEY": ""}
    assert qf.inproc("keys", "add", "groq", "sk-added-key-123456789", env=no_env).code == 0
    (qf.home / "master.key").unlink()
    for command in (["status"], ["keys", "list"], ["report"]):
        run = qf.inproc(*command, env=no_env)
        assert run.code == 2, (command, run.out, run.err)
        (line,) = run.err.strip().splitlines()
        assert "the stored key 'groq-2' cannot be decrypted" in line
        assert "restore the master.key file" in line and "QUOTAFLOW_MASTER_KEY" in line
    wrong = qf.inproc("status", env={"QUOTAFLOW_MASTER_KEY": "not the replicas' key"})
    assert wrong.code == 2
    assert "the master key in QUOTAFLOW_MASTER_KEY is not the one" in wrong.err
    serve = qf("serve", "--port", "0", env=no_env)  # the real entry point: refused at start
    assert serve.code == 2, serve.out + serve.err
    assert "Traceback" not in serve.err and len(serve.err.strip().splitlines()) == 1
    assert "the stored key 'groq-2' cannot be decrypted" in serve.err


def test_feedback_is_a_running_average_kept_in_the_data_folder(qf: QF) -> None:
    qf.write_config(CONFIG)
    assert qf.inproc("feedback", "groq", "m1", "0.8").code == 0
    doc = qf.inproc("feedback", "groq", "m1", "0.4", "--json").json()
    assert doc["quality"]["groq-1"] == pytest.approx(0.6)
    assert qf.inproc("feedback", "groq", "m1", "1.5").code == 2
    assert qf.inproc("feedback", "nope", "m1", "0.5").code == 2


def test_unreachable_server_exits_3_and_bad_config_exits_2(qf: QF, tmp_path: Path) -> None:
    for args in (["status"], ["keys", "list"], ["alerts"], ["reset", "groq"]):
        run = qf(*args, "--url", "http://127.0.0.1:9", config=False)
        assert run.code == 3, args
        assert "cannot reach" in run.err
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [{name: x}]")
    run = qf.inproc("status", "--config", str(bad), config=False)
    assert run.code == 2 and "protocol" in run.err


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> tuple[Proc, str]:
    home = Path(tmp_path_factory.mktemp("srv"))
    with gateway(yaml.safe_dump(CONFIG), home) as gw:
        yield gw, (home / "admin_token").read_text().strip()


def test_against_a_running_server(qf: QF, server: tuple[Proc, str], tmp_path: Path) -> None:
    proc, token = server
    env = {"QUOTAFLOW_ADMIN_TOKEN": token}
    url = ["--url", proc.url]
    status = qf("status", *url, "--json", config=False, env=env).json()  # the real entry point
    assert status["providers"][0]["provider"] == "groq"
    added = qf(
        "keys",
        "add",
        "groq",
        "sk-remote-key-9999",
        "--quota",
        "300",
        *url,
        "--json",
        config=False,
        env=env,
    )
    assert added.code == 0, added.err
    key_id = added.json()["key_id"]
    listed = qf.inproc("keys", "list", *url, "--json", config=False, env=env).json()
    assert key_id in [k["key_id"] for k in listed["keys"]]
    assert "sk-remote-key-9999" not in str(listed)
    paid = qf.inproc("keys", "add", "groq", "sk-remote-paid-8888", *url, "--json", config=False, env=env)  # fmt: skip
    assert paid.code == 0, paid.err
    assert paid.json()["quota_total"] is None  # the server's answer: no quota of its own
    listed = qf.inproc("keys", "list", *url, "--json", config=False, env=env).json()
    (row,) = [k for k in listed["keys"] if k["key_id"] == paid.json()["key_id"]]
    assert row["quota_metric"] is None and row["limits"] == []
    assert qf.inproc("keys", "remove", row["key_id"], *url, config=False, env=env).code == 0
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    assert qf.inproc("reset", "groq", *url, "--token-file", str(token_file), config=False).code == 0
    assert qf.inproc("alerts", *url, "--json", config=False, env=env).code == 0
    assert qf.inproc("keys", "remove", key_id, *url, config=False, env=env).code == 0
    denied = qf(
        "keys",
        "add",
        "groq",
        "sk-x-123456789",
        "--quota",
        "1",
        *url,
        config=False,
        env={"QUOTAFLOW_ADMIN_TOKEN": "qfadm-wrong"},
    )
    assert denied.code == 2 and "invalid admin token" in denied.err


def test_cli_reference_shows_every_commands_help() -> None:
    root = Path(__file__).resolve().parents[2]
    reference = (root / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "$ quotaflow --help" in reference
    for cmd in COMMANDS:
        assert f"Usage: quotaflow {cmd} [OPTIONS]" in reference, cmd
    assert "(docs/cli.md)" in (root / "README.md").read_text(encoding="utf-8")
