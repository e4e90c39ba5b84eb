"""One streamed answer, from the first upstream chunk to the client's ``[DONE]``.

Billing follows what happened:

- completed: the provider's usage (or, if it sent none, an estimate marked ``estimated``);
- cut upstream mid-way: what was delivered, then an SSE error event — never a synthetic
  ``stop`` + ``[DONE]``, so the client knows the answer is incomplete;
- the client went away: what the provider produced until then.

``[DONE]`` is written only after the ledger row is committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
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


class ActiveStream:
    """One open stream; ``finish`` books it when it ends (it knows nothing of the gateway)."""

    def __init__(
        self,
        *,
        finish: Finish,
        clock: Clock,
        resp: UpstreamResponse,
        read_timeout_s: float,
        translator: StreamTranslator,
        request_id: str,
        t0: float,
        prompt_estimate: int,
        headers: dict[str, str],
    ) -> None:
        self._finish = finish
        self._clock = clock
        self._resp = resp
        self._read_timeout_s = read_timeout_s
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

    async def _read_more(self) -> None:
        """Read one piece from upstream into pending frames (sets _eof at the end)."""
        try:
            data = await self._resp.readany(self._read_timeout_s)
        except TRANSPORT_ERRORS as exc:
            if self._tr.state.error is None:
                self._tr.state.error = UpstreamFailure(
                    ErrorKind.CONNECTION, None, f"stream broken: {type(exc).__name__}: {exc}"[:300]
                )
            self._eof = True
            return
        events = self._parser.feed(data) if data else self._parser.close()
        if not data:
            self._eof = True
        for ev in events:
            frames = self._tr.feed(ev)
            if frames and self._ttfb_ms is None:
                self._ttfb_ms = (self._clock.monotonic() - self._t0) * 1000.0
            self._pending.extend(frames)
            if self._tr.state.done or self._tr.state.error is not None:
                break

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
        return UpstreamFailure(
            ErrorKind.CONNECTION, 200, "the provider closed the stream before any data"
        )

    async def pump(self, write: Write) -> None:
        """Send everything to the client, bill it, and end with ``[DONE]`` or an error event."""
        st = self._tr.state
        try:
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
        except BaseException:
            await self._end("aborted", None, "the stream was cancelled")
            raise
        if st.done:
            await self._end("ok", None, None)
            with contextlib.suppress(*CLIENT_GONE):
                await write(DONE)
            return
        failure = st.error or UpstreamFailure(
            ErrorKind.CONNECTION, 200, "the provider's stream ended before it was complete"
        )
        await self._end("aborted", failure, failure.message)
        with contextlib.suppress(*CLIENT_GONE):
            await write(error_frame(failure))

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
