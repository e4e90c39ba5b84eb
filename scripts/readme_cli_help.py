"""Regenerate the README's command-line help from the real CLI: ``python scripts/readme_cli_help.py``.

``tests/cli/test_readme_help.py`` fails when the README and ``quotaflow --help`` disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from quotaflow.cli.main import COMMANDS, cli

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- cli-help:start -->"
END = "<!-- cli-help:end -->"


def help_of(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="quotaflow", terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output.rstrip()


def command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand, in --help order."""
    import click

    paths: list[tuple[str, ...]] = []
    ctx = click.Context(cli)
    for name in COMMANDS:
        paths.append((name,))
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            paths += [(name, sub) for sub in command.list_commands(ctx)]
    return paths


def section() -> str:
    parts = [START, "", "```text", "$ quotaflow --help", help_of(), "```", ""]
    for path in command_paths():
        name = " ".join(path)
        parts += [
            f"<details><summary><code>quotaflow {name} --help</code></summary>", "",
            "```text", help_of(*path), "```", "", "</details>", "",
        ]  # fmt: skip
    return "\n".join([*parts, END])


def render(readme: str) -> str:
    if START in readme:
        return re.sub(
            re.escape(START) + r".*?" + re.escape(END), lambda _: section(), readme, flags=re.S
        )
    return readme


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else 1)
    README.write_text(new, encoding="utf-8")
