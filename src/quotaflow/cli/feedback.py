"""``quotaflow feedback``: a quality score for a provider's model, from the terminal."""

from __future__ import annotations

from typing import Any

import click

from quotaflow.cli.render import emit_json, json_option
from quotaflow.cli.target import (
    Target,
    local_options,
    server_options,
)


@click.command("feedback")
@local_options
@server_options
@json_option
@click.argument("provider")
@click.argument("model")
@click.argument("score", type=click.FloatRange(0.0, 1.0))
@click.option("--failed", is_flag=True, help="The task failed (counts as quality 0).")
def feedback(
    config_path: str | None,
    home: str | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
    as_json: bool,
    provider: str,
    model: str,
    score: float,
    failed: bool,
) -> None:
    """Record how well PROVIDER's MODEL did a task: SCORE from 0 to 1 (its quality
    score, a running average per key × model that the learned strategy uses)."""
    body = {"provider": provider, "model": model, "success": not failed, "score": score}

    async def work(runtime: Any) -> dict[str, Any]:
        stats = runtime.gateway.record_quality(provider, model, not failed, score)
        return {"success": True, **body, "quality": {s.key_id: s.quality_score for s in stats}}

    doc = Target.of(config_path, home, url, token, token_file).run(
        work, "POST", "/api/feedback", body
    )
    if as_json:
        emit_json(doc)
    else:
        q = doc.get("quality") or {}
        click.echo(
            f"quality of {provider}/{model}: " + ", ".join(f"{k} {v:.3f}" for k, v in q.items())
        )
