"""``quotaflow serve`` starts without loading what only later requests or other commands need.

Each check runs a fresh interpreter and lists which heavy packages and quotaflow modules an
import left in ``sys.modules``; a module-level import of one of them on the serve path makes
it fail. (No timing is asserted: CI machines vary too much; benchmarks/load.py reports the
time to ready.)
"""

from __future__ import annotations

import json
import subprocess
import sys

# Made lazy on the serve path: imported by the handler or command that needs them.
NEVER_BEFORE_A_REQUEST = {
    "rich",  # terminal tables of the other commands
    "cryptography",  # secrets added at runtime: encrypted / decrypted on first use
    "yaml",  # read with a config file, when serve() loads it
    "quotaflow.cli.render",  # the other commands' output (and rich)
    "quotaflow.cli.target",  # where the other commands work
    "quotaflow.reports",  # reports and forecasts: the dashboard's first request
    "quotaflow.services.switcher",  # seed 000's /api/status, /api/choose, …
    "quotaflow.services.token_usage",  # seed 003's /api/token-usage/…
    "quotaflow.web.api.admin",
    "quotaflow.web.dashboard.handlers",
    "quotaflow.web.dashboard.page",
    "quotaflow.web.dashboard.series",
    "quotaflow.web.dashboard.snapshot",
    "quotaflow.web.api.feedback",
    "quotaflow.web.api.openapi",
    "quotaflow.web.api.openapi_spec",
    "quotaflow.web.api.switcher",
    "quotaflow.web.api.token_usage",
}
# Not even the server: listing the commands (``quotaflow --help``) or failing on a bad
# config needs none of these.
NOT_FOR_THE_COMMAND_LINE = {"aiohttp", "pydantic", "quotaflow.gateway", "quotaflow.web"}


def loaded_after(code: str) -> set[str]:
    """Which watched modules (packages by their top name) ``code`` left imported."""
    watched = sorted(NEVER_BEFORE_A_REQUEST | NOT_FOR_THE_COMMAND_LINE)
    probe = (
        f"{code}\nimport json, sys\nwatched = {watched!r}\n"
        "print(json.dumps(sorted({w for w in watched for m in sys.modules "
        "if m == w or m.startswith(w + '.')})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout))


def test_the_server_modules_leave_heavy_and_rarely_needed_modules_unloaded() -> None:
    loaded = loaded_after("import quotaflow.cli.main, quotaflow.cli.serve, quotaflow.web.app")
    assert not loaded & NEVER_BEFORE_A_REQUEST, sorted(loaded & NEVER_BEFORE_A_REQUEST)
    assert {"aiohttp", "quotaflow.gateway"} <= loaded  # the probe sees what is imported


def test_the_command_line_loads_neither_the_server_nor_the_schema() -> None:
    loaded = loaded_after("import quotaflow.cli.main, quotaflow.cli.serve")
    assert not loaded, sorted(loaded)


# What a report or a forecast needs only when it runs on the data folder (the runtime and
# its gateway), on a server (the HTTP client), or neither (``--help``, a bad option).
NOT_FOR_A_REPORTS_COMMAND_LINE = {
    "aiohttp",
    "pydantic",
    "prometheus_client",
    "quotaflow.client",
    "quotaflow.config.schema",
    "quotaflow.gateway",
    "quotaflow.runtime",
    "quotaflow.web",
}


def test_report_and_forecast_load_the_engine_only_when_they_run() -> None:
    watched = sorted(NOT_FOR_A_REPORTS_COMMAND_LINE)
    probe = (
        "import json, sys\n"
        "import quotaflow.cli.main, quotaflow.cli.report, quotaflow.cli.forecast\n"
        f"watched = {watched!r}\n"
        "print(json.dumps(sorted({w for w in watched for m in sys.modules "
        "if m == w or m.startswith(w + '.')})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == []


WARM_THEN_SNAPSHOT = """
import asyncio, json, sys, tempfile
from pathlib import Path
from quotaflow.cli.serve import import_handlers
from quotaflow.config.prices import warm
from quotaflow.runtime import Runtime, build_gateway
from quotaflow.testing import config
from quotaflow.web.app import create_app
from quotaflow.web.dashboard.hub import Hub

async def main():
    home = Path(tempfile.mkdtemp()) / "home"
    gw = build_gateway(config({"providers": [{"name": "openai", "protocol": "openai",
        "base_url": "http://127.0.0.1:9/v1", "models": ["gpt-4o-mini"],
        "keys": [{"id": "k1", "secret": "sk-imports-0001"}]}]}), home)
    mg = Runtime.build(gw, home, services=False)
    create_app(gw, runtime=mg)  # its routes name the handlers imported later
    await mg.start()
    warm(list(gw.config.providers.values()))  # what serve does on a thread once it listens
    import_handlers()
    before = set(sys.modules)
    await Hub(mg).current()
    print(json.dumps(sorted(set(sys.modules) - before)))
    await mg.close()

asyncio.run(main())
"""


def test_the_first_dashboard_snapshot_imports_nothing_after_the_warm_up() -> None:
    """Importing on the event loop holds it (the reports and forecasts behind the first
    snapshot: 40-90 ms): serve imports them on a thread once it listens."""
    out = subprocess.run(
        [sys.executable, "-c", WARM_THEN_SNAPSHOT],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
