"""What a newcomer reads describes the product in its own words: the README, the docs and
every ``--help`` page name no documents outside the repository (the design seeds)."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from quotaflow.cli.main import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
# "seed 000", "seed 002's", "the seeds' field names", "seed-era": the design documents.
# "--seed INTEGER  Seed of the synthetic traffic" is a random seed and does not match.
OUTSIDE = re.compile(r"\bseeds?\s+\d{3}|\bseeds?'|\bseed-era|\bthe seeds?\b", re.IGNORECASE)


def _outside_refs(text: str) -> list[str]:
    return [line for line in text.splitlines() if OUTSIDE.search(line)]


def test_readme_and_user_docs_stand_alone() -> None:
    # every page under docs/, the contributors' map (architecture.md) included
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert {"architecture.md", "cli.md", "configuration.md"} <= {p.name for p in docs}
    for path in [ROOT / "README.md", *docs]:
        assert _outside_refs(path.read_text(encoding="utf-8")) == [], path.name


def test_help_pages_stand_alone() -> None:
    runner = CliRunner()
    ctx = click.Context(cli)
    pages = [runner.invoke(cli, ["--help"], prog_name="quotaflow").output]
    for name in COMMANDS:
        pages.append(runner.invoke(cli, [name, "--help"], prog_name="quotaflow").output)
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                pages.append(
                    runner.invoke(cli, [name, sub, "--help"], prog_name="quotaflow").output
                )
    assert len(pages) > len(COMMANDS)
    for page in pages:
        assert _outside_refs(page) == [], page


def test_openapi_document_stands_alone() -> None:
    import json

    from quotaflow.web.api.openapi_spec import build_spec

    assert _outside_refs(json.dumps(build_spec("0"))) == []


def test_the_pattern_catches_a_seed_reference() -> None:
    assert _outside_refs("answers with the seeds' field names")
    assert _outside_refs("Seed 000's local mode")
    assert not _outside_refs("  --seed INTEGER   Seed of the synthetic traffic.  [default: 7]")
