"""WAL checkpoints of the embedded ledger, off the event loop and out of the commits' way.

Left to SQLite, a checkpoint runs inside the COMMIT that grows the WAL past
``wal_autocheckpoint`` pages: on the event loop, copying the WAL into the database and
waiting for two fsyncs while every request waits too. The ledger's writer connection turns
that off (``PRAGMA wal_autocheckpoint=0``) and the checkpoints happen in two parts:

- **Copying** (PASSIVE checkpoints) on a thread of its own: after a commit the writer reads
  how many WAL frames are not yet copied (the WAL-index header in the ``-shm`` file, a
  documented SQLite file format: a read of memory, no system call) and, past
  ``trigger_frames``, wakes the thread. A PASSIVE checkpoint never blocks the writer nor
  readers; its fsync of the WAL is where most of a checkpoint's time goes.
- **Starting the WAL over.** Under steady writes a PASSIVE checkpoint rarely catches up with
  the writer, so the WAL would only grow. Once it holds ``limit_frames``, the copying thread
  finishes a PASSIVE checkpoint and flushes the database file, so that little is left to do,
  and the writer, between two commits, runs a RESTART checkpoint on a thread of its own
  (:meth:`Checkpointer.restart`): it copies the few frames written since, waits for no
  commit (the writer is the one holding off), and then makes the one small write that starts
  the WAL from its beginning, whose header fsync would otherwise fall on the next commit on
  the event loop. Commits queued meanwhile wait for that (a millisecond or two) and go in the
  next batch. A reader holding an old snapshot makes the RESTART give up at once;
  the copying thread catches up again and the writer tries again ``trigger_frames`` later;
  ``journal_size_limit`` trims the file back once it starts over. (Left to the copying
  thread, the RESTART held the write lock while commits waited for it from a worker thread
  in SQLite's busy handler, which sleeps 1, 2, 5, 10 ms...: 10-20 ms stalls at c=1.)
"""

from __future__ import annotations

import concurrent.futures
import logging
import mmap
import os
import sqlite3
import struct
import threading
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("quotaflow.storage.ledgers.checkpoint")

# A PASSIVE checkpoint every 250 frames (~1 MB of 4 KiB pages; SQLite's own default is 1000):
# smaller copies and fsyncs, each over sooner. The WAL starts over past 4,000 (~16 MB).
TRIGGER_FRAMES = 250
LIMIT_RATIO = 16
LIMIT_FRAMES = LIMIT_RATIO * TRIGGER_FRAMES  # past this the WAL is made to start over
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024  # bytes the WAL file is trimmed to when it starts over
# A RESTART does not wait for readers of the old WAL (the writer waits for the RESTART):
# with one under way it copies what it can and gives up; it is tried again later.
RESTART_BUSY_MS = 0

# The WAL-index header (https://www.sqlite.org/walformat.html), in the host's byte order:
# mxFrame (the last valid frame) at byte 16 and nBackfill (frames already copied into the
# database) at byte 96.
_MX_FRAME = struct.Struct("=I")
_MX_FRAME_AT = 16
_BACKFILL_AT = 96
_HEADER_BYTES = 136
_BLIND_COMMITS = 100
_CATCH_UP_PASSES = 4  # PASSIVE checkpoints at most, before a RESTART, to catch up
_CAUGHT_UP_FRAMES = 32  # frames left uncopied that a RESTART may copy itself
_flush = getattr(os, "fdatasync", os.fsync)  # the data (and size), not the file's times
# The write that starts the WAL over: a counter of restarts, in the ledger's own meta table.
_RESET_WRITE = (
    "INSERT INTO ledger_meta (name, value) VALUES ('wal_restarts', 1) "
    "ON CONFLICT (name) DO UPDATE SET value=value+1"
)


class Checkpointer:
    """Checkpoints ``path``'s WAL: :meth:`after_commit` after each commit, and the writer
    runs :meth:`restart` (on a worker thread, between commits) when :meth:`restart_due`."""

    def __init__(
        self,
        path: Path,
        *,
        trigger_frames: int = TRIGGER_FRAMES,
        limit_frames: int = LIMIT_FRAMES,
        busy_ms: int = RESTART_BUSY_MS,
    ) -> None:
        self.path = path
        self.trigger_frames = trigger_frames
        self.limit_frames = max(limit_frames, trigger_frames)
        # Past this the WAL starts over even if the copying thread has not caught up (it
        # got no CPU: the loop was saturated); the RESTART then copies more itself.
        self.hard_limit_frames = 4 * self.limit_frames
        self._busy_ms = busy_ms
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        # The ``-shm`` file, open and mapped until :meth:`release`. Closing any descriptor of
        # a file drops every POSIX lock this process holds on it, SQLite's included: its
        # "dead man switch" read lock then goes, and the next process to open the database
        # truncates the WAL index under the server's SQLite, which dies of SIGBUS. So the
        # file stays open until the process's connections to the database are closed.
        self._shm_file: BinaryIO | None = None
        self._shm: mmap.mmap | None = None
        self._db_fd: int | None = None  # the database file, flushed here; open likewise
        self._lock = threading.Lock()  # one checkpoint at a time: a copy or a restart
        self._copying = False
        self._restarting = False
        self._ready = False  # copied up to the limit and the database flushed: restart now
        self._retry_at = 0  # a RESTART gave up (a reader): not again before this many frames
        self._restart_db: sqlite3.Connection | None = None
        # The writer runs :meth:`restart` here: a thread of its own, never queued behind
        # the reads that share the event loop's default executor.
        self.restarter = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="quotaflow-ledger-restart"
        )
        self._blind = 0  # commits made while the WAL index could not be read
        self.passive = 0  # checkpoints run, by kind (for tests and the curious)
        self.restarts = 0
        self.restarts_refused = 0  # RESTARTs that gave up waiting for a reader
        self.largest_wal = 0  # the most frames the WAL held when looked at

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(
            target=self._run, name="quotaflow-ledger-checkpoint", daemon=True
        )
        self._thread.start()

    def after_commit(self) -> bool:
        """A commit happened (on the writer's thread): wake the copying thread when the WAL
        holds enough frames to copy, or has grown past its limit; returns
        :meth:`restart_due` (from the same read of the WAL index)."""
        frames = self.frames()
        if self._ready:  # copied up to the limit: the writer starts the WAL over next
            pass
        elif frames is None:  # no WAL index to read yet: look every so many commits
            self._blind += 1
            if self._blind % _BLIND_COMMITS == 0:
                self._wake.set()
        elif frames[1] >= self.trigger_frames or frames[0] >= self.limit_frames:
            self._wake.set()
        return self._due(frames)

    def restart_due(self) -> bool:
        """Whether the writer should run :meth:`restart` now."""
        return self._due(self.frames())

    def _due(self, frames: tuple[int, int] | None) -> bool:
        if frames is None:
            return False
        total = frames[0]
        self.largest_wal = max(self.largest_wal, total)
        if total < self.limit_frames or total < self._retry_at or self._copying:
            return False
        return self._ready or total >= self.hard_limit_frames

    def restart(self, writer: sqlite3.Connection) -> bool:
        """Start the WAL over (a RESTART checkpoint and one small write on ``writer``, the
        writer's own connection, whose commits other connections do not count as another's
        change), on the calling thread: the writer runs it on :attr:`restarter` and commits
        nothing meanwhile. True when the WAL started over."""
        with self._lock:
            if self._copying or self._restarting:  # one at a time: the next commit looks again
                return False
            self._restarting = True
        try:
            db = self._restart_db
            if db is None:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
                db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
                self._restart_db = db
            busy = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
            if busy:  # a reader still uses the old WAL: try again a little later
                self.restarts_refused += 1
                self._ready = False  # the copying thread catches up again meanwhile
                frames = self.frames()
                self._retry_at = (frames[0] if frames else 0) + self.trigger_frames
                return False
            writer.execute(_RESET_WRITE)  # starts the WAL over, its header fsync here
            self.restarts += 1
            self._ready = False
            self._retry_at = 0
            return True
        except sqlite3.Error as exc:  # the next commits try again
            log.debug("restart of the WAL of %s failed: %s", self.path, exc)
            self._retry_at = (self.frames() or (0, 0))[0] + self.trigger_frames
            return False
        finally:
            with self._lock:
                self._restarting = False

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.restarter.shutdown(wait=True)
        if self._restart_db is not None:
            self._restart_db.close()
            self._restart_db = None

    # -- the copying thread --------------------------------------------------------------
    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=0")  # a PASSIVE checkpoint never waits anyway
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                try:
                    self._copy(db)
                except (sqlite3.Error, OSError) as exc:  # the next commit tries again
                    log.debug("checkpoint of %s failed: %s", self.path, exc)
        finally:
            db.close()

    def _copy(self, db: sqlite3.Connection) -> None:
        total, uncopied = self.frames() or (0, self.trigger_frames)  # unknown: checkpoint
        self.largest_wal = max(self.largest_wal, total)
        near_limit = total >= self.limit_frames
        if self._ready or (uncopied < self.trigger_frames and not near_limit):
            return
        with self._lock:
            if self._restarting:
                return
            self._copying = True
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passive += 1
            if near_limit:
                # Catch up with the writer (each pass copies what came during the last one,
                # far less each time) and flush the database, off the writer's way: the
                # RESTART then has only a few frames to copy and flush.
                for _ in range(_CATCH_UP_PASSES):
                    frames = self.frames()
                    if frames is None or frames[1] <= _CAUGHT_UP_FRAMES:
                        break
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.passive += 1
                if self._db_fd is None:  # kept open: see _shm_file, the same holds here
                    self._db_fd = os.open(self.path, os.O_RDONLY)
                _flush(self._db_fd)
                self._ready = True
        finally:
            with self._lock:
                self._copying = False

    def release(self) -> None:
        """Unmap and close the ``-shm`` file and the database file: after the ledger's
        SQLite connections are closed (see ``_shm_file``)."""
        if self._db_fd is not None:
            os.close(self._db_fd)
            self._db_fd = None
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        if self._shm_file is not None:
            self._shm_file.close()
            self._shm_file = None

    def frames(self) -> tuple[int, int] | None:
        """(frames in the WAL, frames not yet copied into the database), or None when the
        WAL index cannot be read."""
        shm = self._shm
        if shm is None:
            try:
                if self._shm_file is None:  # kept open (see _shm_file)
                    self._shm_file = open(self.path.with_name(self.path.name + "-shm"), "rb")  # noqa: SIM115
                shm = mmap.mmap(self._shm_file.fileno(), _HEADER_BYTES, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # not there yet, or shorter than its header
                return None
            self._shm = shm
        (mx,) = _MX_FRAME.unpack_from(shm, _MX_FRAME_AT)
        (backfill,) = _MX_FRAME.unpack_from(shm, _BACKFILL_AT)
        return mx, max(mx - backfill, 0)


def writer_pragmas(db: sqlite3.Connection) -> None:
    """The writer connection never checkpoints: the :class:`Checkpointer` does."""
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
