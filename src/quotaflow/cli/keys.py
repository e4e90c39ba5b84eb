"""``quotaflow keys``: list, add, remove, enable and disable keys (secrets always masked)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from quotaflow.cli.exit_codes import EXIT_USAGE
from quotaflow.cli.render import console, emit_json, fail, json_option
from quotaflow.cli.target import (
    Target,
    local_options,
    server_options,
)


@click.group("keys")
def keys() -> None:
    """Keys of every provider: list them, add or remove runtime keys, enable or disable one.

    Keys from the config file are changed there; 'keys add' stores a key (encrypted) in
    the data folder, like POST /api/add_key. Writes to the data folder: use --url
    while a server runs on it.
    """


async def _list(runtime: Any) -> dict[str, Any]:
    from quotaflow.services import status

    out = await status.key_list(runtime.gateway, runtime.keys.is_managed)
    return {"success": True, "keys": out, "count": len(out)}


@keys.command("list")
@local_options
@server_options
@json_option
def list_keys(
    config_path: str | None,
    home: str | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
    as_json: bool,
) -> None:
    """Every key: provider, masked secret, use against its quota (a key without a limit: its
    use in all, and 'no limit'), state (DISABLED, DEPLETED, COOLING or INVALID when it cannot
    take requests), where it comes from, and why it is unavailable."""
    doc = Target.of(config_path, home, url, token, token_file).run(_list, "GET", "/api/keys")
    if as_json:
        emit_json(doc)
        return
    t = Table(title="Keys", title_justify="left")
    for col in ("key", "provider", "secret", "used", "quota", "state", "source", "note"):
        t.add_column(col)
    for k in doc["keys"]:
        t.add_row(
            k["key_id"],
            k["provider"],
            k["api_key"],
            *_use_cells(k),
            key_state(k),
            "added" if k.get("managed") else "config",
            k.get("reason") or "",
        )
    console().print(t)


def _use_cells(k: dict[str, Any]) -> tuple[str, str]:
    """used, quota: against the key's main quota; a key without one shows what the ledger
    booked on it in all, and 'no limit' (not a quota of 0)."""
    metric = k.get("quota_metric")
    if metric is None:
        booked = (k.get("booked") or {}).get("total_tokens")
        return ("?" if booked is None else f"{booked:,} (all time)"), "no limit"
    window = k.get("quota_window")
    per = f"/{window}" if window else ""
    if metric == "cost":
        from quotaflow.config.describe import money

        return money(k["quota_used"]), money(k["quota_total"]) + per
    return f"{k['quota_used']:,}", f"{k['quota_total']:,} {metric}{per}"


# What keeps a key from taking requests, by the start of its reason (the health checks' and
# the status rows' words), as the state column says it.
_UNAVAILABLE = (
    ("disabled", "DISABLED"),
    ("quota", "DEPLETED"),
    ("provider reports no", "RATE-LIMITED"),
    ("cooling down", "COOLING"),
)


def key_state(k: dict[str, Any]) -> str:
    """The key's quota state while it can take requests; else why it cannot: DISABLED (by an
    operator, or after failures), DEPLETED (out of quota, here or at the provider),
    RATE-LIMITED (the provider says its window is used up), COOLING,
    INVALID (the provider rejected it), or UNAVAILABLE."""
    state = str(k["state"]).upper()
    if k.get("available", True) or state == "INVALID":
        return state
    reason = str(k.get("reason") or "")
    return next((word for start, word in _UNAVAILABLE if reason.startswith(start)), "UNAVAILABLE")


@keys.command("add")
@local_options
@server_options
@json_option
@click.argument("provider")
@click.argument("secret", required=False)
@click.option(
    "--quota",
    "quota_total",
    type=click.IntRange(min=1),
    default=None,
    help="Total tokens the key may use (reset with 'quotaflow reset'). Without it the key "
    "has no quota of its own (a paid key): the provider's limits still apply.",
)
def add_key(
    config_path: str | None,
    home: str | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
    as_json: bool,
    provider: str,
    secret: str | None,
    quota_total: int | None,
) -> None:
    """Add a key of PROVIDER (a configured provider or a preset name such as groq, claude).

    SECRET may be omitted to type it at a hidden prompt (it then stays out of the shell history).
    """
    if not secret:
        secret = click.prompt("API key", hide_input=True)

    async def work(runtime: Any) -> dict[str, Any]:
        added = await runtime.keys.add(provider, secret, quota_total or 0)  # 0: no quota
        verb = "added" if added.created else "updated"
        return {
            "success": True,
            "message": f"API key {verb} for {added.key.provider}",
            "provider": added.key.provider,
            "key_id": added.key.id,
            "api_key": added.key.masked,
            "quota_total": quota_total,
            "created": added.created,
            "provider_created": added.provider_created,
        }

    body: dict[str, Any] = {"provider": provider, "api_key": secret}
    if quota_total is not None:  # like the API: no quota_total, no quota of its own
        body["quota_total"] = quota_total
    doc = Target.of(config_path, home, url, token, token_file).run(
        work, "POST", "/api/add_key", body
    )
    if as_json:
        emit_json(doc)
        return
    quota = doc.get("quota_total")
    limit = f"quota {quota:,} tokens" if quota else "no quota of its own"
    click.echo(f"{doc['message']}: {doc['key_id']} ({doc['api_key']}), {limit}")


@keys.command("remove")
@local_options
@server_options
@json_option
@click.argument("key_id")
def remove_key(
    config_path: str | None,
    home: str | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
    as_json: bool,
    key_id: str,
) -> None:
    """Remove a key added at runtime (a key of the config file is removed there)."""

    async def work(runtime: Any) -> dict[str, Any]:
        key = await runtime.keys.remove(key_id)
        return {"success": True, "message": f"Key {key.id} removed", "key_id": key.id}

    doc = Target.of(config_path, home, url, token, token_file).run(
        work, "DELETE", f"/api/keys/{key_id}"
    )
    emit_json(doc) if as_json else click.echo(doc["message"])


def _toggle(enabled: bool) -> click.Command:
    verb = "enable" if enabled else "disable"

    @local_options
    @server_options
    @json_option
    @click.argument("key_id")
    def command(
        config_path: str | None,
        home: str | None,
        url: str | None,
        token: str | None,
        token_file: str | None,
        as_json: bool,
        key_id: str,
    ) -> None:
        async def work(runtime: Any) -> dict[str, Any]:
            from quotaflow.services.keys import set_key_state

            engine = runtime.gateway
            if key_id not in engine.keys:
                fail(
                    f"unknown key {key_id!r} (known: {', '.join(sorted(engine.keys)) or 'none'})",
                    EXIT_USAGE,
                )
            await set_key_state(engine, key_id, enabled)
            return {
                "success": True,
                "message": f"Key {key_id} {verb}d",
                "key_id": key_id,
                "enabled": enabled,
            }

        doc = Target.of(config_path, home, url, token, token_file).run(
            work, "POST", f"/api/keys/{key_id}/{verb}", {}
        )
        emit_json(doc) if as_json else click.echo(doc["message"])

    command.__doc__ = (
        "Route to KEY_ID again (clears a disabled, cooling or depleted state)."
        if enabled
        else "Stop routing to KEY_ID until it is enabled again."
    )
    return click.command(verb)(command)


keys.add_command(_toggle(True))
keys.add_command(_toggle(False))
