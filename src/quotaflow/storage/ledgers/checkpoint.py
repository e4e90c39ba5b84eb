"""WAL checkpoints of the embedded ledger, on a thread of their own.

Left to SQLite, a checkpoint runs inside the COMMIT that grows the WAL past
``wal_autocheckpoint`` pages: on the event loop, copying the WAL into the database and
waiting for two fsyncs while every request waits too. The ledger's writer connection turns
that off (``PRAGMA wal_autocheckpoint=0``) and this thread, on its own connection, does the
checkpoints instead: after a commit it reads how many WAL frames are not yet copied (the
WAL-index header in the ``-shm`` file, a documented SQLite file format: a read of memory,
no system call) and, past ``trigger_frames``, wakes this thread, which runs a PASSIVE
checkpoint: it never blocks the writer nor readers.

The WAL starts over from its beginning at the first commit after a checkpoint copied all of
it. A reader that keeps an old snapshot open can prevent that, and the WAL then grows; past
``limit_frames`` (under steady writes a PASSIVE checkpoint rarely catches up with the
writer) the thread runs a RESTART checkpoint: it holds the write lock until it has copied
everything and waited (at most ``busy_ms``) for readers of the old WAL, so the WAL starts
over, and ``journal_size_limit`` trims the file back. Meanwhile the writer commits from a
thread (:attr:`Checkpointer.restarting`), so the event loop never waits for it.
"""

from __future__ import annotations

import logging
import mmap
import sqlite3
import struct
import threading
from pathlib import Path

log = logging.getLogger("quotaflow.storage.ledgers.checkpoint")

TRIGGER_FRAMES = 1000  # SQLite's own default for wal_autocheckpoint (~4 MB of 4 KiB pages)
LIMIT_FRAMES = 4 * TRIGGER_FRAMES  # past this the WAL is made to start over (RESTART)
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024  # bytes the WAL file is trimmed to when it starts over

# The WAL-index header (https://www.sqlite.org/walformat.html), in the host's byte order:
# mxFrame (the last valid frame) at byte 16 and nBackfill (frames already copied into the
# database) at byte 96.
_MX_FRAME = struct.Struct("=I")
_MX_FRAME_AT = 16
_BACKFILL_AT = 96
_HEADER_BYTES = 136
_BLIND_COMMITS = 100


class Checkpointer:
    """Checkpoints ``path``'s WAL from a daemon thread; :meth:`after_commit` after each commit."""

    def __init__(
        self,
        path: Path,
        *,
        trigger_frames: int = TRIGGER_FRAMES,
        limit_frames: int = LIMIT_FRAMES,
        busy_ms: int = 200,
    ) -> None:
        self.path = path
        self.trigger_frames = trigger_frames
        self.limit_frames = max(limit_frames, trigger_frames)
        self._busy_ms = busy_ms
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._shm: mmap.mmap | None = None
        self.restarting = False  # a RESTART checkpoint is under way
        self._blind = 0  # commits made while the WAL index could not be read
        self.passive = 0  # checkpoints run, by kind (for tests and the curious)
        self.restarts = 0
        self.largest_wal = 0  # the most frames the WAL held when looked at

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(
            target=self._run, name="quotaflow-ledger-checkpoint", daemon=True
        )
        self._thread.start()

    def after_commit(self) -> None:
        """A commit happened (on the writer's thread): wake the checkpoint thread when the
        WAL holds enough frames to copy, or has grown past its limit."""
        frames = self.frames()
        if frames is None:  # no WAL index to read yet: look every so many commits
            self._blind += 1
            if self._blind % _BLIND_COMMITS == 0:
                self._wake.set()
        elif frames[1] >= self.trigger_frames or frames[0] >= self.limit_frames:
            self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._shm is not None:
            self._shm.close()
            self._shm = None

    # -- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                try:
                    self._maybe_checkpoint(db)
                except sqlite3.Error as exc:  # the next commit tries again
                    log.debug("checkpoint of %s failed: %s", self.path, exc)
        finally:
            db.close()

    def _maybe_checkpoint(self, db: sqlite3.Connection) -> None:
        total, uncopied = self.frames() or (0, self.trigger_frames)  # unknown: checkpoint
        self.largest_wal = max(self.largest_wal, total)
        if total >= self.limit_frames:
            self.restarting = True  # the writer commits from a thread meanwhile
            try:
                db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                self.restarting = False
            self.restarts += 1
        elif uncopied >= self.trigger_frames:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passive += 1

    def frames(self) -> tuple[int, int] | None:
        """(frames in the WAL, frames not yet copied into the database), or None when the
        WAL index cannot be read."""
        shm = self._shm
        if shm is None:
            try:
                with open(self.path.with_name(self.path.name + "-shm"), "rb") as f:
                    shm = mmap.mmap(f.fileno(), _HEADER_BYTES, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None
            self._shm = shm
        (mx,) = _MX_FRAME.unpack_from(shm, _MX_FRAME_AT)
        (backfill,) = _MX_FRAME.unpack_from(shm, _BACKFILL_AT)
        return mx, max(mx - backfill, 0)


def writer_pragmas(db: sqlite3.Connection) -> None:
    """The writer connection never checkpoints: the :class:`Checkpointer` does."""
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
