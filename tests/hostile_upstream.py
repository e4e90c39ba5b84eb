"""An OpenAI-compatible upstream that behaves as badly as a real provider may, for tests.

It runs in a thread of the test process (its own event loop, a free port) and answers
``POST /v1/chat/completions`` by the key it is called with:

* ``quote_status[key] = status`` — the error ``status`` in OpenAI's shape, whose message
  quotes the key whole and a 12-character piece of it (as providers do:
  "Incorrect API key provided: sk-…", "… for key <value>"). A streamed request whose key
  is in ``quote_in_stream`` gets a 200 stream that opens and then carries that error as
  an SSE event instead.
* any other key — a success that bills the worst case the request allows: ``n`` choices
  of exactly ``max_completion_tokens``/``max_tokens`` tokens each, and the gateway's own
  prompt estimate (what a reservation may assume at most), so a reservation that forgets
  a multiplier overshoots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from quotaflow.engine.tokens import estimate_prompt_tokens


@dataclass
class Hostile:
    url: str = ""
    quote_status: dict[str, int] = field(default_factory=dict)
    quote_in_stream: set[str] = field(default_factory=set)
    calls: int = 0
    hits: dict[tuple[str, bool], int] = field(default_factory=dict)  # (key, stream) -> calls

    def quote(self, key: str) -> str:
        return f"Incorrect API key provided: {key}. Quota for key {key[3:15]} checked."


def _error(status: int, message: str) -> dict[str, Any]:
    kind = {401: "invalid_request_error", 429: "requests", 500: "server_error"}
    return {"error": {"message": message, "type": kind.get(status, "invalid_request_error"),
                      "param": None, "code": "invalid_api_key" if status == 401 else None}}  # fmt: skip


def worst_case_usage(body: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens a provider could bill for ``body``."""
    n = max(body.get("n") or 1, body.get("best_of") or 1)
    cap = max(body.get("max_completion_tokens") or 0, body.get("max_tokens") or 0) or 4096
    return estimate_prompt_tokens(body), int(n) * int(cap)


async def _chat(state: Hostile, request: web.Request) -> web.StreamResponse:
    state.calls += 1
    key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    body = await request.json()
    stream = bool(body.get("stream"))
    state.hits[key, stream] = state.hits.get((key, stream), 0) + 1
    status = state.quote_status.get(key)
    if status is not None and not (stream and key in state.quote_in_stream):
        return web.json_response(_error(status, state.quote(key)), status=status)
    base = {"id": "chatcmpl-hostile", "created": 1, "model": body.get("model", "m")}
    if status is not None:  # an error event inside an opened stream
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        first = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}  # fmt: skip
        await resp.write(b"data: " + json.dumps(first).encode() + b"\n\n")
        await resp.write(
            b"data: " + json.dumps(_error(status, state.quote(key))).encode() + b"\n\n"
        )
        await resp.write_eof()
        return resp
    prompt, completion = worst_case_usage(body)
    n = int(body.get("n") or 1)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion}  # fmt: skip
    per = completion // n
    if not stream:
        choices = [{"index": i, "message": {"role": "assistant", "content": "w " * per},
                    "finish_reason": "length"} for i in range(n)]  # fmt: skip
        return web.json_response({**base, "object": "chat.completion", "choices": choices,
                                  "usage": usage})  # fmt: skip
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(n):
        chunk = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": i, "delta": {"content": "w " * per}, "finish_reason": "length"}]}  # fmt: skip
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    last = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    await resp.write(b"data: " + json.dumps(last).encode() + b"\n\n" + b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@contextlib.contextmanager
def hostile_upstream() -> Iterator[Hostile]:
    """Serve a :class:`Hostile` upstream on 127.0.0.1 (free port) for the ``with`` block."""
    state = Hostile()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner_box: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()

        async def chat(request: web.Request) -> web.StreamResponse:
            return await _chat(state, request)

        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        state.url = f"http://127.0.0.1:{port}"
        runner_box.append(runner)
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
