"""One streamed answer, from the first upstream chunk to the client's ``[DONE]``.

Billing follows what happened:

- completed: the provider's usage (or, if it sent none, an estimate marked ``estimated``);
- cut upstream mid-way: what was delivered, then an SSE error event — never a synthetic
  ``stop`` + ``[DONE]``, so the client knows the answer is incomplete;
- the client went away: what the provider produced until then;
- cut by the gateway (its first event later than the attempt's budget, the stream longer than
  ``stream_max_s``, the server shutting down): what was delivered, then an SSE error event.

``[DONE]`` is written only after the ledger row is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from quotaflow.adapters.base import StreamTranslator, UpstreamFailure, sse_frame
from quotaflow.adapters.sse import SSEParser
from quotaflow.clock import Clock
from quotaflow.engine.tokens import estimate_completion_tokens
from quotaflow.gateway.outcomes import Attempt, StreamEnd
from quotaflow.gateway.upstream import TRANSPORT_ERRORS
from quotaflow.httpclient import UpstreamResponse
from quotaflow.types import ErrorKind, Usage

Write = Callable[[bytes], Awaitable[None]]
DONE = b"data: [DONE]\n\n"
# A client that went away: aiohttp's reset error is a ConnectionError too.
CLIENT_GONE = (ConnectionError,)
Finish = Callable[[StreamEnd], Awaitable[float]]  # books the ended stream, returns its cost


@dataclass(frozen=True, slots=True)
class Bounds:
    """How long a stream may take: between reads, to its first event, and in all."""

    read_timeout_s: float  # idle time between two pieces from upstream
    first_event_s: float | None = None  # from the call's start to the first event
    max_s: float | None = None  # from the call's start to the end (``stream_max_s``)


class ActiveStream:
    """One open stream; ``finish`` books it when it ends (it knows nothing of the gateway)."""

    def __init__(
        self,
        *,
        finish: Finish,
        clock: Clock,
        resp: UpstreamResponse,
        bounds: Bounds,
        translator: StreamTranslator,
        request_id: str,
        t0: float,
        prompt_estimate: int,
        headers: dict[str, str],
    ) -> None:
        self._finish = finish
        self._clock = clock
        self._resp = resp
        self._bounds = bounds
        self._tr = translator
        self.request_id = request_id
        self._t0 = t0
        self._prompt_estimate = prompt_estimate
        self._parser = SSEParser()
        self._pending: list[bytes] = []
        self._eof = False
        self._ttfb_ms: float | None = None
        self.headers = headers
        self.attempts: list[Attempt] = []
        self.usage: Usage | None = None
        self.cost_usd: float = 0.0
        self.outcome: str = "open"
        self._events = 0  # SSE events parsed so far
        self._head = b""  # the first bytes, to name what a non-stream answer was
        self._pumping: asyncio.Task[Any] | None = None
        self._interrupt: UpstreamFailure | None = None

    def _read_timeout(self) -> tuple[float, UpstreamFailure | None]:
        """How long the next read may wait, and the failure if that wait runs out."""
        b = self._bounds
        wait, why = b.read_timeout_s, None
        elapsed = self._clock.monotonic() - self._t0
        if b.first_event_s is not None and self._events == 0:
            left = b.first_event_s - elapsed
            if left <= wait:
                wait = left
                why = UpstreamFailure(
                    ErrorKind.TIMEOUT, 200, f"no first event within {b.first_event_s:g}s"
                )
        if b.max_s is not None and b.max_s - elapsed <= wait:
            wait = b.max_s - elapsed
            why = UpstreamFailure(
                ErrorKind.TIMEOUT, 200, f"the stream ran longer than its {b.max_s:g}s limit"
            )
        return max(wait, 0.001), why

    async def _read_more(self) -> None:
        """Read one piece from upstream into pending frames (sets _eof at the end)."""
        wait, bound = self._read_timeout()
        try:
            data = await self._resp.readany(wait)
        except TRANSPORT_ERRORS as exc:
            if self._tr.state.error is None:
                self._tr.state.error = self._broken(exc, bound)
            self._eof = True
            return
        if len(self._head) < 200:
            self._head += data[: 200 - len(self._head)]
        events = self._parser.feed(data) if data else self._parser.close()
        self._events += len(events)
        if not data:
            self._eof = True
        for ev in events:
            frames = self._tr.feed(ev)
            if frames and self._ttfb_ms is None:
                self._ttfb_ms = (self._clock.monotonic() - self._t0) * 1000.0
            self._pending.extend(frames)
            if self._tr.state.done or self._tr.state.error is not None:
                break

    def _broken(self, exc: BaseException, bound: UpstreamFailure | None) -> UpstreamFailure:
        if isinstance(exc, TimeoutError):
            return bound or UpstreamFailure(
                ErrorKind.TIMEOUT, 200, f"no data for {self._bounds.read_timeout_s:g}s"
            )
        return UpstreamFailure(
            ErrorKind.CONNECTION, None, f"stream broken: {type(exc).__name__}: {exc}"[:300]
        )

    async def prime(self) -> UpstreamFailure | None:
        """Read until the first frame; a failure before it lets the gateway fall back."""
        st = self._tr.state
        while not self._pending and not self._eof and not st.done and st.error is None:
            await self._read_more()
        if self._pending:
            return None
        self._resp.release()
        if st.error is not None:
            return st.error
        if st.done:
            return None  # an empty but complete answer
        if self._events == 0 and self._head.strip():
            # Bytes, but not one server-sent event: an HTML page or bare JSON answered 200.
            shown = self._head.decode("utf-8", "replace").strip()[:120]
            return UpstreamFailure(
                ErrorKind.MALFORMED, 200, f"the provider's answer is not an event stream: {shown!r}"
            )
        return UpstreamFailure(
            ErrorKind.CONNECTION, 200, "the provider closed the stream before any data"
        )

    def interrupt(self, failure: UpstreamFailure) -> None:
        """End the stream now (the server is shutting down): the client gets what was sent
        and an SSE error event, and the stream is billed for that."""
        if self.outcome != "open":
            return
        self._interrupt = failure
        if self._pumping is not None and not self._pumping.done():
            self._pumping.cancel()

    async def pump(self, write: Write) -> None:
        """Send everything to the client, bill it, and end with ``[DONE]`` or an error event."""
        st = self._tr.state
        self._pumping = asyncio.current_task()
        try:
            if self._interrupt is not None:
                raise asyncio.CancelledError
            while True:
                if self._pending:
                    frames, self._pending = self._pending, []
                    await write(b"".join(frames))
                if st.done or st.error is not None or self._eof:
                    break
                await self._read_more()
        except CLIENT_GONE:
            await self._end("aborted", None, "the client disconnected mid-stream")
            return
        except asyncio.CancelledError:
            interrupt = self._interrupt
            if interrupt is None or self._pumping is None:
                await self._end("aborted", None, "the stream was cancelled")
                raise
            self._pumping.uncancel()  # this stream's own interrupt: end it as a failure
            st.error = st.error or interrupt
        except BaseException:
            await self._end("aborted", None, "the stream was cancelled")
            raise
        finally:
            self._pumping = None
        # A door's translator ends the stream its own way (adapters/doors/wrap.py).
        closing = getattr(self._tr, "closing", None)
        if st.done:
            await self._end("ok", None, None)
            end = DONE if closing is None else closing()
            if end:
                with contextlib.suppress(*CLIENT_GONE):
                    await write(end)
            return
        failure = st.error or UpstreamFailure(
            ErrorKind.CONNECTION, 200, "the provider's stream ended before it was complete"
        )
        await self._end("aborted", failure, failure.message)
        failed = getattr(self._tr, "failed", None)
        with contextlib.suppress(*CLIENT_GONE):
            await write(error_frame(failure) if failed is None else failed(failure))

    def _billable_usage(self) -> Usage:
        st = self._tr.state
        produced = estimate_completion_tokens("".join(st.text))
        u = st.usage
        if u is not None and (st.done or u.completion_tokens >= produced):
            return u
        prompt = u.prompt_tokens if u is not None and u.prompt_tokens else self._prompt_estimate
        return Usage(
            prompt,
            max(produced, u.completion_tokens if u else 0),
            u.cached_tokens if u else 0,
            estimated=True,
        )

    async def _end(self, status: str, failure: UpstreamFailure | None, detail: str | None) -> None:
        if self.outcome != "open":
            return
        self.outcome = status
        self._resp.release() if status == "ok" else self._resp.close()
        usage = self._billable_usage()
        self.usage = usage
        latency_ms = (self._clock.monotonic() - self._t0) * 1000.0
        end = StreamEnd(usage, latency_ms, self._ttfb_ms, status, failure, detail)
        self.cost_usd = await self._finish(end)

    async def abandon(self) -> None:
        """The caller will not pump (e.g. the client left before the response started)."""
        await self._end("aborted", None, "abandoned before the first byte reached the client")


def error_frame(f: UpstreamFailure) -> bytes:
    body: dict[str, Any] = {
        "error": {
            "message": f"upstream stream failed: {f.message}",
            "type": "upstream_error",
            "param": None,
            "code": f.kind.value,
        }
    }
    return sse_frame(orjson.dumps(body))
