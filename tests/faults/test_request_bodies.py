"""Request bodies are read whole, up to the cap: a prompt sent in slow pieces arrives entire,
an oversized chunked upload gets 413, and a broken gzip body gets 400 without a traceback."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, gateway
from tests.faults.rawhttp import chunked, post_pieces

pytestmark = pytest.mark.e2e

JSON = {"content-type": "application/json"}


def _config(fake: Proc) -> str:
    return f"""
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: []}}]
"""


def _prompt(size: int) -> bytes:
    message = {"role": "user", "content": "word " * (size // 5)}
    return json.dumps({"model": "gpt-4o-mini", "messages": [message], "max_tokens": 5}).encode()


def test_a_large_prompt_sent_in_slow_pieces_is_read_whole(fresh_fake: Proc, home: Path) -> None:
    body = _prompt(500_000)
    pieces = [body[i : i + 64_000] for i in range(0, len(body), 64_000)]
    with gateway(_config(fresh_fake), home) as gw:
        status, answer = post_pieces(
            gw.url,
            "/v1/chat/completions",
            pieces,
            {**JSON, "content-length": str(len(body))},
            pause_s=0.05,
        )
        assert status == 200, answer
        chunked_status, chunked_answer = post_pieces(
            gw.url,
            "/v1/chat/completions",
            chunked(body, 50_000),
            {**JSON, "transfer-encoding": "chunked"},
            pause_s=0.02,
        )
        assert chunked_status == 200, chunked_answer


def test_an_oversized_chunked_body_gets_413(fresh_fake: Proc, home: Path) -> None:
    body = b" " * 6_000_000  # over the default 4 MiB cap; never JSON-parsed
    with gateway(_config(fresh_fake), home) as gw:
        status, answer = post_pieces(
            gw.url,
            "/v1/chat/completions",
            chunked(body, 256 * 1024),
            {**JSON, "transfer-encoding": "chunked"},
        )
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_broken_compressed_body_gets_400_without_a_traceback(
    fresh_fake: Proc, home: Path, encoding: str
) -> None:
    broken = gzip.compress(_prompt(2_000))[:-40] + b"not the rest of the stream"
    with gateway(_config(fresh_fake), home) as gw:
        status, answer = post_pieces(
            gw.url,
            "/v1/chat/completions",
            [broken],
            {**JSON, "content-encoding": encoding, "content-length": str(len(broken))},
        )
        assert status == 400, answer
        assert "compressed" in answer["error"]["message"]
        good = gzip.compress(_prompt(2_000))
        status, answer = post_pieces(
            gw.url,
            "/v1/chat/completions",
            [good],
            {**JSON, "content-encoding": "gzip", "content-length": str(len(good))},
        )
        assert status == 200, answer
    assert "Traceback" not in gw.output, gw.output
