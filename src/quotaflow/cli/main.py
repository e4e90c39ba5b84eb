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
    _register_operations()
    _register_scale_out()


def _register_operations() -> None:
    # Issue 5: status, keys, the key tester, reports, forecasts, alerts, reset, feedback.
    from quotaflow.cli import alerts, feedback, forecast, keys, probe, report, reset, status
    from quotaflow.cli.output import EXIT_CODES_HELP

    for command in (
        status.status, keys.keys, probe.probe, report.report, forecast.forecast,
        alerts.alerts, reset.reset, feedback.feedback,
    ):  # fmt: skip
        cli.add_command(command)
    cli.epilog = EXIT_CODES_HELP



def _register_scale_out() -> None:
    # Issue 8: reload the shared counters (Redis) from the ledger (PostgreSQL).
    from quotaflow.cli import rebuild

    cli.add_command(rebuild.rebuild)


_register()


def main() -> None:
    cli(prog_name="quotaflow")
