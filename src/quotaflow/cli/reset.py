"""``quotaflow reset``: seed 000's reset_quota — a provider's usage so far no longer counts."""

from __future__ import annotations

from typing import Any

import click

from quotaflow.cli.exit_codes import EXIT_USAGE
from quotaflow.cli.render import emit_json, fail, json_option
from quotaflow.cli.target import (
    Target,
    local_options,
    server_options,
)


@click.command("reset")
@local_options
@server_options
@json_option
@click.argument("provider")
def reset(
    config_path: str | None,
    home: str | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
    as_json: bool,
    provider: str,
) -> None:
    """Reset the quotas of PROVIDER and its keys (the ledger keeps the history; only the
    current windows start again from zero). Writes to the data folder: use --url while a
    server runs on it."""

    async def work(runtime: Any) -> dict[str, Any]:
        engine = runtime.gateway
        if provider not in engine.config.providers:
            known = ", ".join(sorted(engine.config.providers)) or "none"
            fail(f"unknown provider {provider!r} (configured: {known})", EXIT_USAGE)
        keys = await engine.reset_provider(provider)
        return {
            "success": True,
            "message": f"Quota reset for {provider}",
            "provider": provider,
            "keys_reset": [k.id for k in keys],
        }

    doc = Target.of(config_path, home, url, token, token_file).run(
        work, "POST", "/api/reset_quota", {"provider": provider}
    )
    emit_json(doc) if as_json else click.echo(
        f"{doc['message']} ({', '.join(doc.get('keys_reset', []))})"
    )
