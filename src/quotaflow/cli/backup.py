"""``quotaflow backup PATH``: a consistent copy of the data folder's SQLite database.

It uses SQLite's online-backup API, which copies the pages a reader sees (the WAL included),
so it is safe while ``quotaflow serve`` runs: the copy holds every committed ledger row. A
PostgreSQL ledger is backed up with PostgreSQL's own tools; the command says how.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from quotaflow.cli.exit_codes import EXIT_FAILED, EXIT_USAGE
from quotaflow.cli.render import fail
from quotaflow.cli.target import load_config_or_exit, local_options
from quotaflow.storage.files import private_file

DB_NAME = "quotaflow.db"


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` with the online-backup API; returns the ledger's rows.

    ``target`` is created 0600 first, whatever the umask, like the data folder's files: the
    copy holds the ledger and the keys added at runtime (encrypted)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        private_file(target)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            rows: int = dst.execute("SELECT count(*) FROM ledger").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    return rows


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False))
@local_options
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def backup(path: str, config_path: str | None, home: str | None, force: bool) -> None:
    """Write a consistent copy of the data folder's SQLite database to PATH, safe while the
    server runs (SQLite's online backup, WAL included). Keep the data folder's master.key
    apart from it: it decrypts the keys added at runtime. With a PostgreSQL ledger, use
    pg_dump instead."""
    from quotaflow.runtime import data_home

    config = load_config_or_exit(config_path)
    if config.storage.ledger != "sqlite":
        fail(
            "the ledger is in PostgreSQL (storage.ledger): back it up with PostgreSQL's tools, "
            "e.g. pg_dump --format=custom --file=quotaflow.dump <ledger URL>",
            EXIT_USAGE,
        )
    source = data_home(home) / DB_NAME
    if not source.is_file():
        fail(f"no database at {source}: nothing to back up (see --home)", EXIT_USAGE)
    target = Path(path)
    if target.exists() and not force:
        fail(f"{target} exists: choose another path or pass --force", EXIT_USAGE)
    if target.resolve() == source.resolve():
        fail("PATH is the live database itself", EXIT_USAGE)
    target.unlink(missing_ok=True)
    try:
        rows = backup_sqlite(source, target)
    except sqlite3.Error as exc:
        fail(f"backup failed: {exc}", EXIT_FAILED)
    click.echo(f"backed up {source} to {target}: {rows:,} ledger rows")
