"""``quotaflow admin-token rotate``: replace the admin token of a data folder."""

from __future__ import annotations

import click


@click.group("admin-token")
def admin_token() -> None:
    """The admin token (qfadm-…) that /api writes, key reveals and the dashboard need.

    The first 'quotaflow serve' creates one and leaves it in <data>/admin_token (readable
    by you only); QUOTAFLOW_ADMIN_TOKEN or 'serve --admin-token-file' choose one instead.
    """


@admin_token.command("rotate")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Data folder (default $QUOTAFLOW_HOME or ./.quotaflow).",
)
def rotate(home: str | None) -> None:
    """Replace the admin token and print the new one, once. A running server uses it
    after a restart; the old token stops working then."""
    from quotaflow.runtime import data_home
    from quotaflow.services.access import rotate_admin_token

    token = rotate_admin_token(data_home(home))
    click.echo(token)
    click.echo(
        "this is the new admin token, shown once (only its hash is kept); restart "
        "'quotaflow serve' to use it",
        err=True,
    )
