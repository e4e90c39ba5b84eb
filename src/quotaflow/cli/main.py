"""Entry point of the ``quotaflow`` command: one click group, one module per command family.

Commands are imported only when they run (``quotaflow serve`` does not load the demo, the
reports or the fake provider), so the server is ready quickly.
"""

from __future__ import annotations

import importlib

import click

from quotaflow._version import __version__

# name → (module, attribute), in the order --help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("quotaflow.cli.serve", "serve"),
    "demo": ("quotaflow.cli.demo", "demo"),
    "fake-provider": ("quotaflow.fake_provider.cli", "fake_provider"),
    "config": ("quotaflow.cli.config", "config"),
    "status": ("quotaflow.cli.status", "status"),
    "keys": ("quotaflow.cli.keys", "keys"),
    "probe": ("quotaflow.cli.probe", "probe"),
    "report": ("quotaflow.cli.report", "report"),
    "forecast": ("quotaflow.cli.forecast", "forecast"),
    "alerts": ("quotaflow.cli.alerts", "alerts"),
    "reset": ("quotaflow.cli.reset", "reset"),
    "feedback": ("quotaflow.cli.feedback", "feedback"),
    "rebuild-counters": ("quotaflow.cli.rebuild", "rebuild"),
    "compact": ("quotaflow.cli.compact", "compact"),
    "backup": ("quotaflow.cli.backup", "backup"),
    "admin-token": ("quotaflow.cli.admin_token", "admin_token"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        command = getattr(importlib.import_module(target[0]), target[1])
        assert isinstance(command, click.Command)
        return command


def _epilog() -> str:
    from quotaflow.cli.exit_codes import EXIT_CODES_HELP

    return EXIT_CODES_HELP


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_epilog()
)
@click.version_option(__version__, prog_name="quotaflow")
def cli() -> None:
    """quotaflow — an LLM gateway that switches keys by quota and never overshoots one."""


def main() -> None:
    cli(prog_name="quotaflow")
