"""Refusals and estimated costs through the real server, the CLI and the dashboard's data.

A request no key can take (429) leaves a ``refused`` ledger row; the session summary,
``quotaflow report`` and the dashboard then count the same requests, each by how it ended.
A model with no known price is booked at a stand-in price: the report, the token-usage API
and the dashboard flag the cost as estimated, and the server warns once about the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.procs import wait_for
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e


def config(fake_url: str, per_minute: int) -> str:
    return (
        "settings: {max_wait_s: 0}\n"
        f"providers:\n  - {{name: openai, base_url: '{fake_url}/v1', keys: [{{id: team-a, "
        f"secret: sk-refusal-0001, limits: [{{metric: requests, window: minute, amount: {per_minute}}}]}}]}}\n"
    )


def client(gw: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def report(gw: Served) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "quotaflow", "report", "--json",
         "--config", str(gw.home / "quotaflow.yaml"), "--home", str(gw.home)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(run.stdout)
    return out


def test_refused_and_answered_requests_are_counted_alike_everywhere(tmp_path: Path) -> None:
    answered, refused = 3, 4
    with fake_upstream() as fake, served(config(fake.url, answered), tmp_path / "home") as gw:
        with client(gw) as c:
            for _ in range(answered):
                c.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            for i in range(refused):
                with pytest.raises(openai.RateLimitError):
                    if i % 2:  # a stream is refused the same way
                        c.chat.completions.create(
                            model="gpt-4o-mini",
                            messages=[{"role": "user", "content": "hi"}],
                            stream=True,
                        )
                    else:
                        c.chat.completions.create(
                            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                        )
        status, summary = gw.call("GET", "/api/session-summary")
        assert status == 200
        assert (summary["requests"], summary["successes"], summary["failures"]) == (
            answered + refused,
            answered,
            refused,
        )

        rep = report(gw)
        # the same requests: the summary's failures are the refused (and failed) ones
        outcomes = rep["request_outcomes"]
        assert (outcomes["requests"], outcomes["answered"]) == (
            summary["requests"],
            summary["successes"],
        )
        assert outcomes["refused"] + outcomes["failed"] == summary["failures"]
        assert rep["request_outcomes"] == {
            "requests": answered + refused, "answered": answered, "refused": refused, "failed": 0,
        }  # fmt: skip
        assert rep["totals"]["attempts"] == answered  # a refusal is no attempt

        status, snap = gw.admin("GET", "/api/dashboard")
        assert status == 200
        assert {k: snap["requests"][k] for k in ("requests", "answered", "refused", "failed")} == (
            rep["request_outcomes"]
        )
        log_refusals = [r for r in snap["log"] if r["status"] == "refused"]
        assert len(log_refusals) == refused  # each once (the ledger's row, not a second note)
        assert all(r["model"] == "gpt-4o-mini" and r["detail"] for r in log_refusals)


def test_an_unpriced_model_is_flagged_estimated_and_warned_about_once(tmp_path: Path) -> None:
    with fake_upstream() as fake, served(config(fake.url, 100), tmp_path / "home") as gw:
        with client(gw) as c:
            for _ in range(3):
                c.chat.completions.create(
                    model="gpt-9-preview",  # in no price table: the highest openai price
                    messages=[{"role": "user", "content": "hello there"}],
                )
        rep = report(gw)
        assert rep["totals"]["cost_usd"] > 0 and rep["totals"]["cost_estimated"] is True
        status, usage = gw.admin("GET", "/api/token-usage/summary")
        assert status == 200
        assert usage["total"]["cost_estimated"] is True
        assert usage["providers"]["openai"]["cost_estimated"] is True
        status, snap = gw.admin("GET", "/api/dashboard")
        assert status == 200
        assert [ln for ln in snap["unpriced"] if "openai/gpt-9-preview" in ln]
        assert all(r["cost_estimated"] for r in snap["log"] if r["model"] == "gpt-9-preview")
        assert snap["charts"]["cost_per_day"][-1]["cost_estimated"] is True
        assert wait_for(lambda: any("unpriced_model" in ln for ln in gw.proc.lines))
        warned = [ln for ln in gw.proc.lines if "no known price for openai/gpt-9-preview" in ln]
        assert len(warned) == 1, warned

    # A model with a known price is not flagged.
    with fake_upstream() as fake, served(config(fake.url, 100), tmp_path / "home2") as gw:
        with client(gw) as c:
            c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
        rep = report(gw)
        assert rep["totals"]["cost_usd"] > 0 and rep["totals"]["cost_estimated"] is False


def test_start_up_warns_once_about_a_listed_model_with_no_known_price(tmp_path: Path) -> None:
    with fake_upstream() as fake:
        yaml = (
            f"providers:\n  - {{name: openai, base_url: '{fake.url}/v1', "
            "models: [gpt-4o-mini, gpt-9-preview], keys: [{secret: sk-warn-0001}]}\n"
        )
        with served(yaml, tmp_path / "home") as gw:
            # the prices are read in the background once the server listens
            assert wait_for(
                lambda: any(
                    "warning: no known price for openai/gpt-9-preview" in ln for ln in gw.proc.lines
                ),
                timeout=20,
            )
            status, snap = gw.admin("GET", "/api/dashboard")
            assert status == 200
            assert [ln for ln in snap["unpriced"] if "openai/gpt-9-preview" in ln]
            with client(gw) as c:
                c.chat.completions.create(
                    model="gpt-9-preview", messages=[{"role": "user", "content": "hi"}]
                )
            warned = [ln for ln in gw.proc.lines if "no known price for openai/gpt-9-preview" in ln]
            assert not [
                ln for ln in gw.proc.lines if "gpt-4o-mini" in ln and "no known price" in ln
            ]
    assert len(warned) == 2  # the start-up line and the log's one warning, not one per request
