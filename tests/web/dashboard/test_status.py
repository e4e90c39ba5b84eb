"""The dashboard's one status, from the gateway's one status (no server needed)."""

from __future__ import annotations

from quotaflow.services.readiness import COOLING, DISABLED, INVALID, Block, Readiness
from quotaflow.web.dashboard.status import status_json

CHOSEN = {"route": "auto", "chosen": {"key_id": "b"}}
NONE = {"route": "auto", "chosen": None}
CALM = {"status": "normal", "message": "All usage below the warning level"}


def test_a_disabled_key_makes_it_degraded_not_healthy() -> None:
    ready = Readiness(2, {"a": Block(INVALID, "invalid: 401 invalid key")})
    loud = {"status": "warning", "message": ready.message()}
    st = status_json(ready, CHOSEN, loud)
    assert (st["level"], st["title"]) == ("warning", "degraded")
    assert st["message"] == "1 of 2 keys can serve (1 rejected by the provider)."
    assert (st["keys_available"], st["keys_disabled"], st["keys_invalid"]) == (1, 1, 1)
    assert (st["emergency"], st["emergency_message"]) == ("warning", ready.message())


def test_no_key_able_to_serve_is_critical_everywhere() -> None:
    ready = Readiness(1, {"a": Block(COOLING, "cooling down: rate limited")})
    st = status_json(ready, NONE, {"status": "emergency", "message": ready.message()})
    assert (st["level"], st["title"], st["can_serve"]) == ("critical", "no key can serve", False)
    assert st["message"] == "No key can serve (1 cooling down)."
    assert st["emergency"] == "emergency"


def test_all_keys_available_is_healthy_whatever_the_agents_budgets() -> None:
    st = status_json(Readiness(2), CHOSEN, CALM)
    assert (st["level"], st["title"], st["message"]) == ("ok", "healthy", "All 2 keys can serve.")
    assert st["emergency"] == "normal"


def test_keys_that_serve_but_have_no_room_for_a_typical_request_say_so() -> None:
    st = status_json(Readiness(2, {"a": Block(DISABLED, "disabled by an operator")}), NONE, CALM)
    assert st["level"] == "warning"
    assert st["message"].startswith("1 of 2 keys can serve (1 disabled). No key has room")


def test_no_keys_configured() -> None:
    st = status_json(Readiness(0), {"route": None}, CALM)
    assert (st["level"], st["title"]) == ("critical", "no keys")
    assert st["message"] == "No keys configured: add a key."


def test_the_chart_library_is_vendored_with_its_licence() -> None:
    import re
    from pathlib import Path

    static = Path(__file__).resolve().parents[3] / "src" / "quotaflow" / "web" / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/static/uPlot.iife.min.js" in sources
    assert all(s.startswith(("/static/", "#")) for s in sources), sources  # nothing from a CDN
    assert "MIT License" in (static / "uPlot-LICENSE.txt").read_text(encoding="utf-8")
    assert not (static / "charts.js").read_text(encoding="utf-8").count("createElementNS")
