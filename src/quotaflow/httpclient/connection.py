"""One HTTP/1.1 connection to a provider.

The connection is an :class:`asyncio.Protocol` fed to httptools' C parser (llhttp), so a
response costs a handful of callbacks instead of aiohttp's client machinery. The response's
body and its back-pressure (reading paused while much waits unread) are :mod:`.response`'s.

Failures are raised as :class:`ConnectionError` subclasses (so ``OSError``), timeouts as
:class:`TimeoutError` — the two families the gateway turns into fallbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from quotaflow.httpclient.errors import ServerDisconnected, UpstreamHTTPError
from quotaflow.httpclient.response import Response

# A response head is a few hundred bytes from any provider: these bound what a hostile or
# broken one can make us buffer (httptools accumulates a header until its line ends).
MAX_HEAD_BYTES = 64 << 10
MAX_HEADERS = 256


class Connection(asyncio.Protocol):
    """A keep-alive connection; at most one request in flight."""

    def __init__(self, origin: str, release: Callable[[Connection], None], max_body: int) -> None:
        self.origin = origin
        self.max_body = max_body
        self._release = release
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.got_bytes = False  # any byte of the current response
        self._raw_headers: list[tuple[str, str]] = []
        self._head: asyncio.Future[Response] | None = None
        self._resp: Response | None = None
        self._until_eof = False  # body delimited by the server closing the connection
        self._keep_alive = True
        self._whole_body = False
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = False  # bytes being received belong to a response head
        self._head_left = MAX_HEAD_BYTES
        self.sent_at = 0.0  # monotonic time the current request was written
        self.lost_at = 0.0  # monotonic time the connection was seen closed

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self._in_head and len(data) > self._head_left:
            # counted before the parser sees it: where the head ends decides
            end = data.find(b"\r\n\r\n")
            if end < 0 or end + 4 > self._head_left:
                self._abort(UpstreamHTTPError(f"response head over {MAX_HEAD_BYTES} bytes"))
                return
        self._head_left -= len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._abort(UpstreamHTTPError("the provider tried to switch protocols"))
        except httptools.HttpParserError as exc:
            self._abort(UpstreamHTTPError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost_at = time.monotonic()
        self._stop_timer()
        self.transport = None
        resp = self._resp
        if resp is not None:
            self._resp = None
            if self._until_eof and exc is None:
                resp._finish()
            else:
                resp._fail(
                    ServerDisconnected(_lost(exc, "the provider closed the connection mid-body"))
                )
        head = self._head
        if head is not None and not head.done():
            self._head = None
            head.set_exception(
                ServerDisconnected(
                    _lost(exc, "the provider closed the connection before answering")
                )
            )

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._raw_headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._raw_headers) <= MAX_HEADERS:  # one over marks the head as refused
            self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if len(self._raw_headers) > MAX_HEADERS:
            self._abort(UpstreamHTTPError(f"response head with over {MAX_HEADERS} headers"))
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self._in_head = False
        headers = CIMultiDictProxy(CIMultiDict(self._raw_headers))
        te = headers.get("transfer-encoding", "").lower()
        self._until_eof = (
            "content-length" not in headers and "chunked" not in te and status not in (204, 304)
        )
        self._keep_alive = self._parser.should_keep_alive() and not self._until_eof
        head = self._head
        if head is None or head.done():
            self._abort(UpstreamHTTPError("an answer nobody asked for"))
            return
        self._head = None
        try:
            resp = Response(self, status, headers)
        except UpstreamHTTPError as exc:
            head.set_exception(exc)
            self.close()
            return
        self._resp = resp
        if not self._whole_body:
            self._stop_timer()
        head.set_result(resp)

    def on_body(self, body: bytes) -> None:
        resp = self._resp
        if resp is not None:
            resp._feed(body)

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:
            return
        self._stop_timer()
        resp, self._resp = self._resp, None
        if resp is None:
            return
        resp._finish()
        if self._keep_alive and not self.closed:
            self.got_bytes = False
            self.resume()  # paused by a large unread body: the next request must be heard
            self._release(self)
        else:
            self.close()

    # -- used by the pool ------------------------------------------------------------------
    def start(
        self, request: bytes, deadline: float | None, whole_body: bool
    ) -> asyncio.Future[Response]:
        """Write one request; the future resolves with the response's head.

        At ``deadline`` (loop time) whatever is still awaited — the head, or with
        ``whole_body`` the rest of the body too — fails with :class:`TimeoutError`.
        """
        assert self.transport is not None and self._head is None and self._resp is None
        loop = asyncio.get_running_loop()
        self._head = head = loop.create_future()
        self._whole_body = whole_body
        self._in_head = True
        self._head_left = MAX_HEAD_BYTES
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._on_deadline)
        self.sent_at = time.monotonic()
        self.transport.write(request)
        return head

    def _on_deadline(self) -> None:
        self._timer = None
        self._abort(TimeoutError("no complete answer in time"))

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def pause(self) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # connection_lost follows and fails what is pending
        self.closed = True

    def abandon(self) -> None:
        """The caller stopped waiting (timeout, cancellation): nothing may reuse this."""
        self._head = None
        self._stop_timer()
        self.close()

    def _abort(self, exc: BaseException) -> None:
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(exc)
        resp, self._resp = self._resp, None
        if resp is not None:
            resp._fail(exc)
        self.close()


def _lost(exc: BaseException | None, what: str) -> str:
    return f"{what} ({type(exc).__name__}: {exc})" if exc is not None else what
