"""``quotaflow config check FILE`` and ``quotaflow config schema``, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GOOD = """\
providers:
  - name: openai
    keys:
      - {id: team-a, secret: "${QF_TEST_SECRET}", limits: [{metric: tokens, window: day, amount: 5000}]}
      - {id: team-b, secret: sk-test-two}
routes:
  - name: smart
    deployments: [{provider: openai, model: gpt-4o-mini}]
"""


def _run(
    *args: str, env: dict[str, str] | None = None, without: str = ""
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != without}
    return subprocess.run(
        [sys.executable, "-m", "quotaflow", "config", *args],
        capture_output=True,
        text=True,
        env={**full, **(env or {})},
        timeout=60,
    )


def test_check_accepts_a_valid_file(tmp_path: Path) -> None:
    cfg = tmp_path / "quotaflow.yaml"
    cfg.write_text(GOOD)
    r = _run("check", str(cfg), env={"QF_TEST_SECRET": "sk-test-one"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        f"{cfg} is valid: 1 provider, 2 keys, 1 route, 0 agents; strategy headroom, time zone UTC."
    )


def test_check_names_the_wrong_field_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "quotaflow.yaml"
    cfg.write_text(GOOD.replace("window: day", "window: fortnight"))
    r = _run("check", str(cfg), env={"QF_TEST_SECRET": "sk-test-one"})
    assert r.returncode == 2
    assert "providers.0.keys.0.limits.0.window: unknown window 'fortnight'" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_names_a_missing_environment_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "quotaflow.yaml"
    cfg.write_text(GOOD)
    r = _run("check", str(cfg), without="QF_TEST_SECRET")
    assert r.returncode == 2
    assert "environment variable QF_TEST_SECRET is not set" in r.stderr


def test_check_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    r = _run("check", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert "cannot read config file" in r.stderr


def test_check_names_the_file_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad1.yaml"
    bad.write_text("providers: [\n  - a: b\n")
    r = _run("check", str(bad))
    assert r.returncode == 2
    assert r.stderr.startswith(f"{bad}: not valid YAML: ") and r.stderr.count(f"{bad}:") == 1
    bad.write_text(GOOD.replace("window: day", "window: fortnight"))
    r = _run("check", str(bad), env={"QF_TEST_SECRET": "sk-test-one"})
    assert r.stderr.startswith(f"{bad}: invalid configuration:") and r.stderr.count(str(bad)) == 1
    r = _run("check", str(tmp_path / "nope.yaml"))
    assert r.stderr.count("nope.yaml") == 1, r.stderr


def test_schema_is_json_schema_that_describes_the_file() -> None:
    r = _run("schema")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["additionalProperties"] is False
    assert set(doc["properties"]) >= {"providers", "routes", "settings", "server", "storage"}
    window = doc["$defs"]["LimitSpec"]["properties"]["window"]
    assert "rolling" in window["description"]


def test_shell_completion_as_the_readme_documents_it() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert 'eval "$(_QUOTAFLOW_COMPLETE=bash_source quotaflow)"' in readme
    env = {
        "_QUOTAFLOW_COMPLETE": "bash_complete",
        "COMP_WORDS": "quotaflow config ",
        "COMP_CWORD": "2",
    }
    r = subprocess.run(
        [sys.executable, "-m", "quotaflow"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert r.stdout.split() == ["plain,check", "plain,schema"]
