"""One pipelined connection to Redis for the counters' scripts (the hot path).

Every request runs a few Lua scripts (reserve, settle, …), each atomic in Redis. Sent
through redis-py's pool, each call costs a connection checkout, its own write and read and
a timeout task; here the calls made during one turn of the event loop leave in one write on
a single connection, and the replies, which Redis sends in order, are matched to their
callers in order: many requests' calls share the connection's round trips and system calls. Replies are parsed by
hiredis.

Errors keep redis-py's classes, so callers handle them alike: a reply error is a
:class:`~redis.exceptions.ResponseError`; a lost connection fails every call in flight with
:class:`~redis.exceptions.ConnectionError` (the next call reconnects); a call unanswered
for ``timeout_s`` closes the connection and fails with :class:`~redis.exceptions.TimeoutError`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_MORE = object()  # hiredis: no whole reply yet


def encode(*parts: str | bytes | int) -> bytes:
    """A command in RESP: an array of bulk strings."""
    # The usual command (text and numbers) is built as one str and encoded once.
    out = [f"*{len(parts)}\r\n"]
    for p in parts:
        if type(p) is bytes:
            return _encode_bytes(parts)
        t = p if type(p) is str else str(p)
        out.append(f"${len(t)}\r\n{t}\r\n")
    text = "".join(out)
    if not text.isascii():  # lengths in characters are not lengths in bytes then
        return _encode_bytes(parts)
    return text.encode()


def bulk(text: str) -> str:
    """``text`` as one RESP bulk string, still as text (its length counted in UTF-8 bytes):
    the constant parts of a command, made once and joined into each call's."""
    return f"${len(text.encode())}\r\n{text}\r\n"


def _encode_bytes(parts: tuple[str | bytes | int, ...]) -> bytes:
    chunks = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        chunks.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(chunks)


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: ScriptPipe) -> None:
        self._pipe = pipe

    def data_received(self, data: bytes) -> None:
        self._pipe.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pipe.lost(exc)


class ScriptPipe:
    """Commands to one Redis (``host``, ``port``, ``db``, optional AUTH) on one connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._addr = (host, port)
        self._hello: list[bytes] = []
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            self._hello.append(encode(*auth))
        if db:
            self._hello.append(encode("SELECT", db))
        self._timeout_s = timeout_s
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._reader = hiredis.Reader(
            notEnoughData=_MORE, replyError=ResponseError, encoding="utf-8"
        )
        self._waiting: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []  # commands of this turn, not written yet
        self.sent = 0  # commands sent (for tests)

    async def call(self, *parts: str | bytes | int) -> Any:
        """Send one command; its reply (a reply error is raised)."""
        if self._transport is None:
            await self._connect()
        return await self._send(encode(*parts))

    @property
    def connected(self) -> bool:
        return self._transport is not None

    async def drain(self) -> None:
        """Wait (at most ``timeout_s``) for the replies to every command sent so far."""
        waiting = [fut for _, fut in self._waiting]
        if waiting:
            await asyncio.wait(waiting, timeout=self._timeout_s)

    def send(self, *parts: str | bytes | int) -> asyncio.Future[Any]:
        """:meth:`call` on a :attr:`connected` pipe, as a future (one coroutine less)."""
        return self._send(encode(*parts))

    def send_encoded(self, command: bytes) -> asyncio.Future[Any]:
        """:meth:`send` of a command already in RESP."""
        return self._send(command)

    def _send(self, command: bytes) -> asyncio.Future[Any]:
        transport = self._transport
        if transport is None:
            raise RedisConnectionError("the connection to Redis is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((loop.time(), fut))
        # The commands of one turn of the loop (many requests') leave in one write.
        if not self._out:
            loop.call_soon(self._write_out)
        self._out.append(command)
        self.sent += 1
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self._timeout_s, self._check_timeout)
        return fut

    def _write_out(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and out:
            self._transport.write(b"".join(out))

    async def _connect(self) -> None:
        if self._connecting is not None:  # another call is connecting: wait for it
            await asyncio.shield(self._connecting)
            return
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self), *self._addr), self._timeout_s
            )
            self._reader = hiredis.Reader(
                notEnoughData=_MORE, replyError=ResponseError, encoding="utf-8"
            )
            self._transport = transport
            for hello in self._hello:
                reply = await self._send(hello)
                if isinstance(reply, ResponseError):
                    raise reply
            self._connecting.set_result(None)
        except (TimeoutError, OSError, ResponseError) as exc:
            self.close()
            error = RedisConnectionError(f"cannot connect to Redis at {self._addr}: {exc}")
            self._connecting.set_exception(error)
            self._connecting.exception()  # retrieved: waiters get it through shield
            raise error from None
        finally:
            self._connecting = None

    def received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while (reply := reader.gets()) is not _MORE:
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._fail(RedisConnectionError("unexpected reply from Redis"))
                return
            _, fut = waiting.popleft()
            if fut.done():
                continue
            if isinstance(reply, ResponseError):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail_waiting(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        oldest = self._waiting[0][0]
        if loop.time() - oldest >= self._timeout_s:
            self._fail(RedisTimeoutError(f"Redis did not answer within {self._timeout_s:g}s"))
        else:
            self._timer = loop.call_at(oldest + self._timeout_s, self._check_timeout)

    def _fail(self, error: Exception) -> None:
        """Drop the connection (its stream can no longer be trusted) and fail every call."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()
        self._fail_waiting(error)

    def _fail_waiting(self, error: Exception) -> None:
        self._out = []  # their callers fail below
        waiting, self._waiting = self._waiting, collections.deque()
        for _, fut in waiting:
            if not fut.done():
                fut.set_exception(error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                transport.close()
        self._fail_waiting(RedisConnectionError("the connection to Redis is closed"))
