"""``quotaflow status``: seed 000's ``/api/status`` — every provider's quota state and keys."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from quotaflow.cli.render import console, emit_json, json_option
from quotaflow.cli.target import (
    Target,
    local_options,
    server_options,
)


async def local_status(engine: Any) -> dict[str, Any]:
    """The same document as ``GET /api/status``, from the data folder."""
    from quotaflow.services import status

    rows = await status.provider_statuses(engine)
    total = sum(r.quota_total for r in rows)
    taken = sum(r.quota_used + r.reserved for r in rows)
    return {
        "success": True,
        "providers": [r.to_json() for r in rows],
        "health": status.system_health(rows),
        "forced_provider": engine.forced_provider,
        "total_providers": len(rows),
        "available_providers": sum(1 for r in rows if r.available),
        "overall_used_pct": round(taken / total * 100.0, 2) if total else 0.0,
    }


@click.command("status")
@local_options
@server_options
@json_option
def status(
    config_path: str | None,
    home: str | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
    as_json: bool,
) -> None:
    """Every provider's quota: used, total, remaining, state (OK / WARNING / CRITICAL /
    DEPLETED) and its keys (masked). Exit 0 when some provider is available, 1 when none is."""
    target = Target.of(config_path, home, url, token, token_file)
    doc = target.run(local_status, "GET", "/api/status")
    if as_json:
        emit_json(doc)
    else:
        show(doc)
    if doc.get("providers") and not any(p.get("available") for p in doc["providers"]):
        raise SystemExit(1)


def show(doc: dict[str, Any]) -> None:
    out = console()
    t = Table(title="Providers", title_justify="left")
    for col in ("provider", "state", "used", "total", "remaining", "used %", "keys", ""):
        t.add_column(
            col,
            justify="right" if col in ("used", "total", "remaining", "used %", "keys") else "left",
        )
    for p in doc.get("providers", []):
        flags = ("forced " if p.get("forced") else "") + (
            "" if p.get("available") else "unavailable"
        )
        t.add_row(
            p["provider"],
            str(p["state"]).upper(),
            f"{p['quota_used']:,}",
            f"{p['quota_total']:,}",
            f"{p['remaining']:,}",
            f"{p['used_pct']:.1f}",
            str(len(p.get("keys", []))),
            flags,
        )
    out.print(t)
    health = doc.get("health") or {}
    out.print(f"health: {health.get('status', '?')} — {health.get('message', '')}")
