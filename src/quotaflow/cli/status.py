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


async def local_status(runtime: Any) -> dict[str, Any]:
    """The same document as ``GET /api/status``, from the data folder."""
    from quotaflow.services import status

    return await status.status_document(runtime.gateway)


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
    """Every provider's quota: used, total, remaining (in tokens, or requests for a key
    counted in requests), state (OK / WARNING / CRITICAL / DEPLETED, or INVALID / DISABLED
    when its keys are rejected or disabled), and each key (its label, never the secret) with
    its plan, every limit with where it came from and why it cannot serve; then the
    gateway's health (the same verdict as /api/health). Exit 0 when some provider is available, 1 when
    none is (or none is configured)."""
    target = Target.of(config_path, home, url, token, token_file)
    doc = target.run(local_status, "GET", "/api/status")
    if as_json:
        emit_json(doc)
    else:
        show(doc)
    if not any(p.get("available") for p in doc.get("providers", [])):
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
        t.add_row(p["provider"], str(p["state"]).upper(), *_quota_cells(p), flags)
    out.print(t)
    for p in doc.get("providers", []):
        for k in p.get("keys", []):
            why = "" if k.get("available", True) else f"  [unavailable: {k.get('reason')}]"
            line = f"  {k.get('limits_summary') or k.get('key_id')}{why}"
            out.print(line, highlight=False, markup=False)  # a reason may hold [brackets]
    health = doc.get("health") or {}
    out.print(f"health: {health.get('status', '?')} — {health.get('message', '')}", markup=False)


def _quota_cells(p: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """used, total, remaining, used %, keys — in the provider's quota unit."""
    keys = str(len(p.get("keys", [])))
    metric = p.get("quota_metric", "tokens")
    if metric is None:
        return "", "no limit", "", "", keys
    from quotaflow.config.describe import money

    unit = "" if metric in ("tokens", "cost") else f" {metric}"
    fields = ("quota_used", "quota_total", "remaining")
    if metric == "cost":
        used, total, left = (money(p[f]) for f in fields)
    else:
        used, total, left = (f"{p[f]:,}{unit}" for f in fields)
    return used, total, left, f"{p['used_pct']:.1f}", keys
