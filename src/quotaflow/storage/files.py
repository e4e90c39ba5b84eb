"""The data folder and its files, private to their owner.

The folder holds the ledger, the master key and the admin token's hash: it is created
0700 and its files 0600, whatever the umask. An existing folder that other users can read
is left as its owner set it, with a warning at start (once per folder and process).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger(__name__)
_warned: set[Path] = set()


def private_folder(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700, or warn once if it exists wider."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        os.chmod(path, FOLDER_MODE)  # mkdir's mode is filtered by the umask
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path.resolve() not in _warned:
        _warned.add(path.resolve())
        log.warning(
            "the data folder %s is readable by other users (mode %o): it holds the ledger "
            "and the keys' master key; run 'chmod 700 %s'",
            path,
            mode,
            path,
        )


def private_file(path: Path) -> None:
    """Create ``path`` empty as 0600 if missing; take group and other rights off if not."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, FILE_MODE)
    else:
        os.close(fd)
