"""A full disk under the SQLite ledger: requests get 503 with Retry-After (not 500 with a
traceback each), the episode is logged once, and the server recovers by itself once space
is freed."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, gateway, wait_for
from tests.faults.mounts import small_tmpfs

pytestmark = pytest.mark.e2e

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
).encode()


def _chat(url: str) -> tuple[int, dict[str, str], dict]:
    req = urllib.request.Request(
        url + "/v1/chat/completions", data=BODY, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return (
                resp.status,
                {k.lower(): v for k, v in resp.headers.items()},
                json.loads(resp.read()),
            )
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())


def _fill(path: Path) -> None:
    """Write ``path`` until the device is full."""
    with path.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


def test_a_full_disk_gets_503_and_recovers(fresh_fake: Proc, tmp_path: Path) -> None:
    cfg = f"""
providers:
  - name: openai
    base_url: {fresh_fake.url}/v1
    keys: [{{id: a, secret: {KEYS[0]}, limits: []}}]
"""
    with small_tmpfs(tmp_path / "mnt", size="4m") as mount:
        with gateway(cfg, mount.path / "home") as gw:
            assert _chat(gw.url)[0] == 200
            filler = mount.path / "filler"
            _fill(filler)
            answers = []
            for _ in range(300):  # the WAL grows into the full disk within a few requests
                answers.append(_chat(gw.url))
                if answers[-1][0] != 200:
                    break
            status, headers, body = answers[-1]
            assert status == 503, body
            assert body["error"]["code"] == "ledger_unavailable"
            assert int(headers["retry-after"]) > 0
            assert {a[0] for a in answers} <= {200, 503}
            for _ in range(5):
                assert _chat(gw.url)[0] == 503
            filler.unlink()
            assert wait_for(lambda: _chat(gw.url)[0] == 200, timeout=30, interval=0.2)
        output = gw.output
    assert "Traceback" not in output, output
    # failing, then succeeding again: one line each, the first with what to do
    (down,) = [ln for ln in output.splitlines() if "event=store_unreachable" in ln]
    assert "the ledger at" in down and "cannot be written" in down and "free disk space" in down
    (back,) = [ln for ln in output.splitlines() if "event=store_back" in ln]
    assert "can be written again" in back
