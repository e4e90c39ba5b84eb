"""The dashboard's one status, from the snapshot's own sections (no server needed)."""

from __future__ import annotations

from typing import Any

from quotaflow.web.dashboard.status import status_json

CHOSEN = {"route": "auto", "chosen": {"key_id": "b"}}
NONE = {"route": "auto", "chosen": None}
CALM = {
    "status": "normal",
    "message": "All usage below the warning level",
    "thresholds": {"warning": 80.0, "critical": 95.0, "emergency": 98.0},
    "providers": [{"provider": "openai", "usage_percentage": 10.0, "level": "normal"}],
    "budgets": [],
}


def key(key_id: str, **health: Any) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "state": "ok",
        "available": not health,
        "enabled": True,
        "health": health,
    }


def providers(*keys: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"provider": "openai", "keys": list(keys)}]


def test_a_disabled_key_makes_it_degraded_not_healthy() -> None:
    st = status_json(
        providers(key("a", disabled_reason="401 invalid key"), key("b")),
        CHOSEN,
        {"active": []},
        CALM,
    )
    assert (st["level"], st["title"]) == ("warning", "degraded")
    assert st["message"] == "1 of 2 keys available; 1 disabled."
    assert st["emergency"] == "warning"  # the Emergency tile never says normal beside it


def test_no_key_able_to_serve_is_critical_everywhere() -> None:
    st = status_json(providers(key("a", cooldown_until=1e12)), NONE, {"active": []}, CALM)
    assert (st["level"], st["title"], st["can_serve"]) == ("critical", "no key can serve", False)
    assert st["message"] == "No key could take a request now (1 cooling down)."
    assert st["emergency"] == "critical" and st["emergency_message"] == st["message"]


def test_a_cooling_provider_is_not_an_emergency_of_the_budgets() -> None:
    # The emergency status counts an unavailable provider as 100 % used.
    loud = {
        **CALM,
        "status": "emergency",
        "providers": [{"usage_percentage": 12.0, "level": "emergency"}],
    }
    st = status_json(
        providers(key("a", cooldown_until=1e12), key("b")), CHOSEN, {"active": []}, loud
    )
    assert (st["level"], st["emergency"]) == ("warning", "warning")


def test_all_keys_available_and_quiet_is_healthy() -> None:
    st = status_json(providers(key("a"), key("b")), CHOSEN, {"active": []}, CALM)
    assert (st["level"], st["title"], st["message"]) == ("ok", "healthy", "All 2 keys available.")
    assert st["emergency"] == "normal"


def test_an_active_critical_alert_raises_the_status() -> None:
    alerts = {"active": [{"severity": "critical", "message": "openai key a: 100 % used"}]}
    st = status_json(providers(key("a"), key("b")), CHOSEN, alerts, CALM)
    assert (st["level"], st["title"]) == ("critical", "critical")
    assert st["message"].endswith("1 active alert.")


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
