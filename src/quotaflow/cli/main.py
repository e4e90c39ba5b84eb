"""Entry point of the ``quotaflow`` command: one click group, one module per command family."""

from __future__ import annotations

import click

from quotaflow import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="quotaflow")
def cli() -> None:
    """quotaflow — an LLM gateway that switches keys by quota and never overshoots one."""


def _register() -> None:
    # Each command family lives in its own module and is imported lazily here so that
    # `quotaflow --help` stays fast.
    from quotaflow.cli import demo, fake_provider_cmd, serve

    cli.add_command(serve.serve)
    cli.add_command(demo.demo)
    cli.add_command(fake_provider_cmd.fake_provider)


_register()


def main() -> None:
    cli(prog_name="quotaflow")
