"""The Grafana dashboard in deploy/ is built on the metric names quotaflow exports."""

import json
import re
from pathlib import Path

from quotaflow.observability.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "quotaflow-dashboard.json"


def test_every_dashboard_query_names_an_exported_family():
    families = {m.name for m in Metrics().registry.collect()}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = set()
    for p in panels:
        for t in p["targets"]:
            for name in re.findall(r"quotaflow_[a-z_]+", t["expr"]):
                used.add(re.sub(r"_(total|bucket|count|sum)$", "", name))
    assert used and used <= families, used - families
    assert {
        "quotaflow_requests",
        "quotaflow_headroom_ratio",
        "quotaflow_gateway_overhead_seconds",
    } <= used
