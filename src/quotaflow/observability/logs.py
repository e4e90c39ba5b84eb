"""Logging: one set-up for the server, the access line, and warning events.

Everything goes through the standard :mod:`logging` tree under ``quotaflow``; the server
installs one handler on it (:func:`configure_logging`) writing either ``text`` lines
(``key=value`` fields after the message) or one JSON object per line. Structured fields
travel in the record's ``fields`` attribute (``extra={"fields": {...}}``), so library users
who configure logging themselves get them too.

Warnings name what to do. :class:`EventLog` prints each episode once: an event that repeats
for the same subject within a minute is counted and summarised on its next line instead of
being printed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

import orjson

from quotaflow.clock import Clock, SystemClock

LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("text", "json")
LEVEL_ENV: Final = "QUOTAFLOW_LOG_LEVEL"
FORMAT_ENV: Final = "QUOTAFLOW_LOG_FORMAT"
ACCESS_LOGGER: Final = "quotaflow.access"
EVENT_LOGGER: Final = "quotaflow.events"
REPEAT_WINDOW_S: Final = 60.0

_HANDLER_NAME: Final = "quotaflow-server"


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The structured fields a record carries (empty when it has none)."""
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


_PLAIN = re.compile(r'[^\s"=\\]+\Z')  # a value printed without quotes


def _logfmt_value(value: Any) -> str:
    if value is None:
        return "-"
    kind = type(value)
    if kind is int or kind is bool:
        return str(value)
    if kind is float:
        return f"{value:.6g}"
    text = str(value)
    if _PLAIN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05Z WARNING quotaflow.events message key=value …``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = fields_of(record)
        if fields:
            line += " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in fields_of(record).items():
            out.setdefault(k, v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def resolve(level: str | None, fmt: str | None) -> tuple[str, str]:
    """The flag's value, else the environment's, else ``info`` / ``text``; bad names refused."""
    lv = (level or os.environ.get(LEVEL_ENV) or "info").lower()
    ft = (fmt or os.environ.get(FORMAT_ENV) or "text").lower()
    if lv not in LEVELS:
        raise ValueError(f"log level {lv!r} is not one of {', '.join(LEVELS)} ({LEVEL_ENV})")
    if ft not in FORMATS:
        raise ValueError(f"log format {ft!r} is not one of {', '.join(FORMATS)} ({FORMAT_ENV})")
    return lv, ft


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Whole lines to a stream, written after the event loop's current turn.

    A record logged on a thread that runs an event loop (the server's access line, once per
    request) is kept and formatted and written when the loop has run what is ready, i.e.
    after the response's bytes went out; the records of one turn go out in one write, one
    whole line each, flushed. Elsewhere (no loop running) a record is written at once.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._held: list[logging.LogRecord] = []
        self._due_on: asyncio.AbstractEventLoop | None = None  # the loop that will write them

    def emit(self, record: logging.LogRecord) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write([record])
            return
        self._held.append(record)
        if self._due_on is not loop:  # (a loop that stopped first leaves its lines to this one)
            self._due_on = loop
            loop.call_soon(self._write_held)

    def _write_held(self) -> None:
        with self.lock or contextlib.nullcontext():
            held, self._held, self._due_on = self._held, [], None
            self._write(held)

    def _write(self, records: list[logging.LogRecord]) -> None:
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + self.terminator)
            except Exception:
                self.handleError(record)
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(records[0])

    def flush(self) -> None:
        """Write what is held (at exit, or when asked) and flush the stream."""
        with self.lock or contextlib.nullcontext():
            held, self._held, self._due_on = self._held, [], None
            if held:
                self._write(held)
        super().flush()


def configure_logging(
    level: str | None = None, fmt: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Send the ``quotaflow`` logger tree to ``stream`` (stderr) at ``level`` in ``fmt``.

    Called again it replaces its own handler, never one an embedding program installed.
    """
    lv, ft = resolve(level, fmt)
    root = logging.getLogger("quotaflow")
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler = LineHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if ft == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(lv.upper())
    root.propagate = False  # one line per record, not a second copy from the root logger
    # The server's lines never print these; not gathering them saves every record's cost.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler


class EventLog:
    """Warning events that say what to do, each printed once per episode.

    ``warn(event, subject, message, hint=…)`` prints when ``subject``'s ``event`` was not
    printed within the last :data:`REPEAT_WINDOW_S`; repeats inside the window are counted
    and their number is printed with the next line (``repeated=N``). ``clear(event,
    subject)`` ends an episode, so the next occurrence prints at once.
    """

    def __init__(self, clock: Clock | None = None, logger: logging.Logger | None = None) -> None:
        self.clock = clock or SystemClock()
        self.log = logger or logging.getLogger(EVENT_LOGGER)
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def warn(
        self,
        event: str,
        subject: str,
        message: str,
        *,
        hint: str | None = None,
        level: int = logging.WARNING,
        **fields: Any,
    ) -> bool:
        """Print (True) or count (False) one occurrence."""
        key = (event, subject)
        now = self.clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < REPEAT_WINDOW_S:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        out: dict[str, Any] = {"event": event, "subject": subject, **fields}
        held = self._held.pop(key, 0)
        if held:
            out["repeated"] = held
        if hint:
            out["hint"] = hint
        self.log.log(level, message, extra={"fields": out})
        return True

    def clear(self, event: str, subject: str) -> None:
        self._last.pop((event, subject), None)
        self._held.pop((event, subject), None)
