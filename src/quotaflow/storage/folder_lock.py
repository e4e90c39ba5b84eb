"""One server per data folder: an exclusive OS lock on ``<home>/server.lock``.

The lock is the operating system's (``flock``, or ``msvcrt.locking`` on Windows), so it dies
with the process: a server killed with ``kill -9`` leaves no stale lock behind. The file also
holds the holder's pid, which a refused second server names. Commands that only read the
folder never take it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from quotaflow.errors import StorageUnusable
from quotaflow.storage.files import FILE_MODE, private_folder

LOCK_NAME = "server.lock"


class FolderLocked(StorageUnusable):
    """Another live process serves from this data folder."""

    def __init__(self, home: Path, pid: str) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"the data folder {home.resolve()} is in use by {holder} (another quotaflow serve); "
            "one server per data folder: stop it, or give this one its own --home"
        )


class FolderLock:
    """The held lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def lock_data_folder(home: Path) -> FolderLock:
    """Take the folder's lock and write this pid into it, or raise :class:`FolderLocked`."""
    path = home / LOCK_NAME
    try:
        private_folder(home)
        fd, writable = _open(path)
    except OSError as exc:
        raise StorageUnusable(
            f"cannot open {path.resolve()} ({exc.strerror or exc}): the data folder must be "
            "writable by the server; fix its permissions or choose another --home"
        ) from None
    if not _try_lock(fd):
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise FolderLocked(home, holder)
    if writable:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return FolderLock(fd)


def _open(path: Path) -> tuple[int, bool]:
    """The lock file's descriptor, and whether it could be opened for writing. A read-only
    folder still gets its lock (a lock needs no write access), so what fails next is the
    database, which says what is wrong with it."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE), True
    except OSError:
        if not path.is_file():
            raise
        return os.open(path, os.O_RDONLY), False


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
