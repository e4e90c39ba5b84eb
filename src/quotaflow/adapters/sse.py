"""An incremental Server-Sent Events parser (WHATWG rules: LF, CRLF or CR line ends,
comment lines, multi-line ``data``), fed with bytes as they arrive."""

from __future__ import annotations

from quotaflow.adapters.base import SSEEvent


class SSEParser:
    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buf += chunk
        events: list[SSEEvent] = []
        buf = self._buf
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if lf == -1 and cr == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                if cr + 1 == n:
                    break  # a CR at the end may be the first half of CRLF: wait for more
                end, nxt = cr, cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
            else:
                end, nxt = lf, lf + 1
            self._line(buf[start:end].decode("utf-8", "replace"), events)
            start = nxt
        self._buf = buf[start:]
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value

    def close(self) -> list[SSEEvent]:
        """Events completed by the end of the stream (a last event without a blank line)."""
        events: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf.decode("utf-8", "replace"), events)
            self._buf = b""
        if self._data:
            events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return events
