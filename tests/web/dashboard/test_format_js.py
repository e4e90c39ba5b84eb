"""The dashboard's number formatting (``static/format.js``), run in node: money under a
cent keeps its digits, and a spend limit shows as money, not as a count rounded to 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import quotaflow.web

FORMAT_JS = Path(quotaflow.web.__file__).parent / "static" / "format.js"

if shutil.which("node") is None:
    if os.environ.get("CI") == "true":  # as the browser tests: CI must run it, not skip it
        pytest.fail("the dashboard's format.js tests need node, which is missing", pytrace=False)
    pytest.skip("node is not installed", allow_module_level=True)


def run_js(expressions: list[str]) -> list[str]:
    script = (
        f"import * as f from {json.dumps(FORMAT_JS.as_uri())};\n"
        f"console.log(JSON.stringify([{', '.join(expressions)}]));\n"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def test_money_under_a_cent_keeps_its_digits() -> None:
    cases = {
        "f.usd(0.0001)": "$0.0001",
        "f.usd(0.000075)": "$0.000075",
        "f.usd(0.0125)": "$0.0125",
        "f.usd(0.5)": "$0.50",
        "f.usd(25)": "$25.00",
        "f.usd(0)": "$0",
    }
    assert run_js(list(cases)) == list(cases.values())


def test_a_limit_shows_money_for_spend_and_a_count_otherwise() -> None:
    got = run_js(['f.amount("cost", 0.0001)', 'f.amount("tokens", 200000)'])
    assert got == ["$0.0001", "200,000"]
