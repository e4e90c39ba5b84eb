"""``quotaflow config``: check a configuration file without starting a server, and print the
JSON Schema of the file for editors (YAML language servers validate and complete with it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from quotaflow.cli.exit_codes import EXIT_USAGE
from quotaflow.engine.words import plural


@click.group("config")
def config() -> None:
    """Check a configuration file, or print its JSON Schema."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Validate FILE as `quotaflow serve --config FILE` would: YAML syntax, every field,
    references between providers and routes, and ${VARIABLES} from the environment.

    \b
    Prints what the file configures and exits 0, or names each wrong field and exits 2."""
    from quotaflow.config.load import load_config
    from quotaflow.errors import ConfigError

    try:
        cfg = load_config(file)
    except ConfigError as exc:
        click.echo(naming_the_file(file, exc.message), err=True)
        sys.exit(EXIT_USAGE)
    explicit = sum(1 for r in cfg.routes.values() if not r.implicit)
    click.echo(
        f"{file} is valid: {plural(len(cfg.providers), 'provider')}, "
        f"{plural(len(cfg.keys), 'key')}, {plural(explicit, 'route')}, "
        f"{plural(len(cfg.agents), 'agent')}; strategy {cfg.settings.strategy}, "
        f"time zone {cfg.settings.timezone}."
    )


def naming_the_file(file: Path, message: str) -> str:
    """The message with the file's name once: the loader's messages about the file itself
    (not YAML, cannot be read) name it already, those about a field do not."""
    if message.startswith((f"{file}: ", f"cannot read config file {file}: ")):
        return message
    return f"{file}: {message}"


def schema_document() -> dict[str, object]:
    """The JSON Schema of ``quotaflow.yaml``, generated from the model that validates it."""
    from quotaflow.config.schema import ConfigSpec

    doc = ConfigSpec.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "quotaflow.yaml",
        **{k: v for k, v in doc.items() if k != "title"},
    }


@config.command("schema")
def schema() -> None:
    """Print the JSON Schema of quotaflow.yaml, for editors.

    \b
    For example, with the YAML language server (VS Code, Neovim, …):
      quotaflow config schema > quotaflow.schema.json
    and as the first line of quotaflow.yaml:
      # yaml-language-server: $schema=./quotaflow.schema.json"""
    click.echo(json.dumps(schema_document(), indent=2, ensure_ascii=False))
