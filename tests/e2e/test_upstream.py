"""The upstream connection end to end: a real gateway process against a real provider stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS
from tests.e2e.procs import Proc, gateway, ledger_rows
from tests.e2e.test_proxy import client, config

pytestmark = pytest.mark.e2e


def test_a_large_completion_returns_whole(fresh_fake: Proc, home: Path) -> None:
    """A 1.5 MB answer (well over the client's read-ahead mark) comes back 200, charged once."""
    word = "x" * 1_500_000  # one word: one token to the fake model, 1.5 MB of answer
    with gateway(config(fresh_fake, [("a", KEYS[0], None), ("b", KEYS[1], None)]), home) as gw:
        resp = client(gw).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"ECHO: {word}"}],
            max_tokens=50,
        )
        assert resp.choices[0].message.content == word
    rows = ledger_rows(home)
    assert [(r["key_id"], r["status"]) for r in rows] == [("a", "ok")]
