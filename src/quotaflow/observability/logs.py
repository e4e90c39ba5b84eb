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
import sys
import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, TextIO

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
DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%S"


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The structured fields a record carries (empty when it has none)."""
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _plain(text: str) -> bool:
    """Printed without quotes: not empty, no space, quote, ``=`` or backslash, nothing
    unprintable (str methods, several times cheaper than a regular expression here)."""
    return (
        text.isprintable()
        and bool(text)
        and " " not in text
        and '"' not in text
        and "=" not in text
        and "\\" not in text
    )


def _logfmt_value(value: Any) -> str:
    kind = type(value)  # most values are plain names: they are tested first
    if kind is str:
        text: str = value
    elif value is None:
        return "-"
    elif kind is int or kind is bool:
        return str(value)
    elif kind is float:
        return f"{value:.6g}"
    else:
        text = str(value)
    if _plain(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_PAIRS: dict[tuple[str, str], str] = {}  # "key=value" of names seen before (bounded)
_PAIRS_MAX = 4096


def _logfmt(fields: Mapping[str, Any]) -> str:
    """``key=value …`` for every field of every access line, so made cheaply: a name seen
    before (door, agent, route, provider, key, model…) is looked up, not formatted again."""
    parts = []
    pairs = _PAIRS
    for k, v in fields.items():
        kind = type(v)
        if kind is str:
            text = pairs.get((k, v))
            if text is None:
                text = f"{k}={v}" if _plain(v) else f"{k}={_logfmt_value(v)}"
                if len(pairs) >= _PAIRS_MAX:  # request ids never repeat: start over
                    pairs.clear()
                pairs[(k, v)] = text
            parts.append(text)
        elif v is None:
            parts.append(k + "=-")
        elif kind is int:
            parts.append(f"{k}={v}")
        elif kind is float:
            parts.append(f"{k}={v:.6g}")
        else:
            parts.append(f"{k}={_logfmt_value(v)}")
    return " ".join(parts)


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05Z WARNING quotaflow.events message key=value …``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", DATE_FORMAT)
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            line = super().format(record)
        else:
            line = self._head(record.created, record.levelname, record.name, record.getMessage())
        fields = fields_of(record)
        if fields:
            line += " " + _logfmt(fields)
        return line

    def line(self, created: float, name: str, msg: str, fields: Mapping[str, Any]) -> str:
        """What :meth:`format` makes of an ``info`` record with these fields, without the
        record (the access line's short way, see :func:`log_access`)."""
        return self._head(created, "INFO", name, msg) + " " + _logfmt(fields)

    def _head(self, created: float, levelname: str, name: str, msg: str) -> str:
        # The text of the format above, with the time formatted once per second, not per line.
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(DATE_FORMAT, self.converter(created))
        return f"{self._stamp} {levelname} {name} {msg}"


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

    def line(self, created: float, name: str, msg: str, fields: Mapping[str, Any]) -> str:
        """What :meth:`format` makes of an ``info`` record with these fields."""
        out: dict[str, Any] = {"ts": round(created, 3), "level": "info", "logger": name, "msg": msg}
        for k, v in fields.items():
            out.setdefault(k, v)
        return orjson.dumps(out, default=str).decode()


_SHORT_FORMATTERS = (TextFormatter, JsonFormatter)  # those that format a held line directly


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
        self._held: list[logging.LogRecord | _Line] = []
        self._due_on: asyncio.AbstractEventLoop | None = None  # the loop that will write them

    def emit(self, record: logging.LogRecord | _Line) -> None:
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

    def _write(self, records: list[logging.LogRecord | _Line]) -> None:
        lines = []
        fmt = self.formatter
        for record in records:
            try:
                if type(record) is _Line and isinstance(fmt, _SHORT_FORMATTERS):
                    lines.append(fmt.line(*record) + self.terminator)
                else:
                    lines.append(self.format(_record(record)) + self.terminator)
            except Exception:
                self.handleError(_record(record))
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(_record(records[0]))

    def flush(self) -> None:
        """Write what is held (at exit, or when asked) and flush the stream."""
        with self.lock or contextlib.nullcontext():
            held, self._held, self._due_on = self._held, [], None
            if held:
                self._write(held)
        super().flush()


class _Line(NamedTuple):
    """An ``info`` line held without its :class:`logging.LogRecord` (see :func:`log_access`)."""

    created: float
    name: str
    msg: str
    fields: Mapping[str, Any]


def _record(line: logging.LogRecord | _Line) -> logging.LogRecord:
    if isinstance(line, logging.LogRecord):
        return line
    record = logging.makeLogRecord({"name": line.name, "msg": line.msg, "fields": line.fields})
    record.created = line.created
    return record


_server: tuple[logging.Logger, LineHandler] | None = None  # set by configure_logging


def log_access(logger: logging.Logger, msg: str, fields: Mapping[str, Any]) -> None:
    """``logger.info(msg, extra={"fields": fields})``, the short way when the server's own
    handler is the only thing it reaches (no handler or filter added by anyone else): the
    line is held as it is and formatted after the loop's turn, with no record built and no
    caller looked up. The text is the same either way; elsewhere it is the long way."""
    if not logger.isEnabledFor(logging.INFO):
        return
    server = _server
    if (
        server is not None
        and logger.parent is server[0]
        and not logger.handlers
        and not logger.filters
        and len(server[0].handlers) == 1
        and server[0].handlers[0] is server[1]
        and not server[0].filters
        and not server[1].filters
        and server[1].level <= logging.INFO
    ):
        # (the wall clock a log record takes, as logging.LogRecord does)
        server[1].emit(_Line(time.time(), logger.name, msg, fields))  # noqa: TID251
    else:
        logger.info(msg, extra={"fields": fields})


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
    global _server
    _server = (root, handler)
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
