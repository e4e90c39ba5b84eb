"""What ships: the licence the package declares, its metadata, and a container image that
runs unprivileged, reports its health and starts after what it needs."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.e2e.procs import gateway

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")


def test_license_file_matches_the_declared_licence() -> None:
    assert PYPROJECT["license"] == "MIT"
    assert PYPROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_project_metadata_and_classifiers() -> None:
    # No public address of the project is known: none is declared rather than a guessed
    # one; the package's page is its README.
    assert "urls" not in PYPROJECT
    assert PYPROJECT["readme"] == "README.md"
    classifiers = PYPROJECT["classifiers"]
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Typing :: Typed" in classifiers
    # A licence classifier beside an SPDX expression is refused by PyPI (PEP 639).
    assert not [c for c in classifiers if c.startswith("License ::")]


def _instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [ln.split(None, 1)[1] for ln in joined.splitlines() if ln.startswith(name + " ")]


def test_image_runs_as_a_non_root_user() -> None:
    users = _instructions("USER")
    assert users and users[-1].strip() not in {"root", "0"}
    # the user is created and owns the data folder the CMD writes to
    assert "useradd" in DOCKERFILE and "chown quotaflow:quotaflow /var/lib/quotaflow" in DOCKERFILE
    assert DOCKERFILE.index("USER ") > DOCKERFILE.index("RUN pip install")


def _healthcheck_command() -> list[str]:
    (check,) = _instructions("HEALTHCHECK")
    argv = json.loads(check.split("CMD", 1)[1])
    assert isinstance(argv, list)
    return [str(a) for a in argv]


def test_healthcheck_passes_on_a_ready_server_and_fails_without_one(tmp_path: Path) -> None:
    argv = _healthcheck_command()
    assert any("/readyz" in a for a in argv)
    config = "providers:\n  - name: openai\n    keys: [{id: a, secret: sk-test-health}]\n"
    with gateway(config, tmp_path / "home") as gw:
        port = gw.url.rsplit(":", 1)[1]
        here = [a.replace(":5050/", f":{port}/") for a in argv]
        here[0] = "python3" if here[0] == "python" else here[0]
        ok = subprocess.run(here, capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    down = subprocess.run(here, capture_output=True, timeout=30)
    assert down.returncode != 0


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    rules = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "**"  # everything is excluded unless allowed below
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "src"}
    assert {".git", ".venv", ".quotaflow"} <= set(rules)
    copied = re.findall(r"^COPY (.+) \S+$", DOCKERFILE, flags=re.M)
    sources = {s for line in copied for s in line.split()}
    assert sources <= allowed, "the Dockerfile copies a file the context excludes"


@pytest.mark.parametrize("replica", ["quotaflow-1", "quotaflow-2", "quotaflow-3"])
def test_compose_replicas_wait_for_their_dependencies(replica: str) -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    needs = services[replica]["depends_on"]
    assert needs == {
        "redis": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    for dep in needs:
        assert "healthcheck" in services[dep]
    assert services["haproxy"]["depends_on"][replica] == {"condition": "service_healthy"}
