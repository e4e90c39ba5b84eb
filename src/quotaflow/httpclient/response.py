"""A response being read, and the back-pressure on its connection: the body is buffered on
the :class:`Response` as it arrives, so the connection goes back to its pool once the last
byte is in, even if the caller reads later; while more than :data:`HIGH_WATER` bytes wait
unread, the connection stops reading its socket, and reading the body resumes it."""

from __future__ import annotations

import asyncio
from typing import Protocol

from multidict import CIMultiDictProxy

from quotaflow.httpclient.decoding import DecodeError, decoder_for
from quotaflow.httpclient.errors import BodyTooLarge, ServerDisconnected, UpstreamHTTPError

HIGH_WATER = 1 << 20  # stop reading the socket while this much body waits unread


class Flow(Protocol):
    """What a response needs of its connection: its body cap, reading paused and resumed
    (back-pressure), and closing it (a body that failed or was given up)."""

    max_body: int
    paused: bool

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def close(self) -> None: ...


class Response:
    """Status and headers at once; the body as it arrives (``read``/``readany``)."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_decoder",
        "_eof",
        "_exc",
        "_max_body",
        "_size",
        "_total",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(self, conn: Flow, status: int, headers: CIMultiDictProxy[str]) -> None:
        self.status = status
        self.headers = headers
        self._conn: Flow | None = conn
        self._chunks: list[bytes] = []
        self._size = 0  # bytes waiting unread
        self._total = 0  # bytes received in all
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        try:
            self._decoder = decoder_for(headers.get("content-encoding", ""))
        except ValueError as exc:
            raise UpstreamHTTPError(str(exc)) from None
        self._max_body = conn.max_body
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self._max_body:
            raise BodyTooLarge(f"response body of {length} bytes, over {self._max_body}")

    # -- fed by the connection -------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if self._exc is not None:
            return  # failed already; the rest of the packet being parsed is dropped
        if self._decoder is None:
            self._take(data)
            return
        try:
            pieces = self._decoder.decode(data, self._max_body - self._total)
        except OverflowError:
            self._fail(BodyTooLarge(f"response body over {self._max_body} bytes"))
            return
        except DecodeError as exc:
            self._fail(UpstreamHTTPError(str(exc)))
            return
        for piece in pieces:
            self._take(piece)

    def _take(self, data: bytes) -> None:
        self._total += len(data)
        if self._total > self._max_body:
            self._fail(BodyTooLarge(f"response body over {self._max_body} bytes"))
            return
        if data:
            self._chunks.append(data)
            self._size += len(data)
            if self._size > HIGH_WATER and self._conn is not None:
                self._conn.pause()
            self._wake()

    def _finish(self) -> None:
        if self._decoder is not None:
            try:
                tail = self._decoder.finish()
            except DecodeError as exc:
                self._fail(UpstreamHTTPError(str(exc)))
                return
            if tail:
                self._chunks.append(tail)
                self._size += len(tail)
        self._eof = True
        self._conn = None
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._eof or self._exc is not None:
            return
        self._exc = exc
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def _wait(self, timeout_s: float | None) -> None:
        w = self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout_s is None:
                await w
            else:
                async with asyncio.timeout(timeout_s):
                    await w
        except BaseException:
            self._waiter = None
            self.close()
            raise

    # -- read by the caller ----------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return self._eof

    async def read(self, timeout_s: float | None = None) -> bytes:
        """The whole (remaining) body."""
        while not self._eof:
            if self._exc is not None:
                raise self._exc
            conn = self._conn
            if conn is not None and conn.paused:
                conn.resume()  # the whole body is wanted: back-pressure would only stall it
            await self._wait(timeout_s)
        if self._exc is not None:
            raise self._exc
        chunks, self._chunks, self._size = self._chunks, [], 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def readany(self, timeout_s: float | None = None) -> bytes:
        """What has arrived (waiting for something), or ``b""`` at the end of the body."""
        while not self._chunks:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            await self._wait(timeout_s)
        chunks, self._chunks, self._size = self._chunks, [], 0
        conn = self._conn
        if conn is not None and conn.paused:
            conn.resume()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def release(self) -> None:
        """Done with it: a half-read body costs the connection (it can't be reused)."""
        if not self._eof:
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if not self._eof and self._exc is None:
            self._exc = ServerDisconnected("the response was closed before its end")
        self._chunks, self._size = [], 0
