"""An operator's enable / disable of a key, kept in the data folder so that it outlives a
restart, and applied by every process that opens the folder (server, library, CLI)."""

from __future__ import annotations

from typing import Any

from quotaflow.engine import health as hl
from quotaflow.gateway import Gateway as Engine
from quotaflow.gateway.booking import INVALID_SETTING, secret_digest

KEY_STATE_SETTING = "key_state:"  # + key id → "enabled@<ts>" | "disabled@<ts>"


async def set_key_state(engine: Engine, key_id: str, enabled: bool) -> None:
    """An operator's enable / disable of a key, kept in the data folder (and applied now)."""
    now = engine.clock.now()
    store: Any = engine.ledger
    await store.set_setting(
        KEY_STATE_SETTING + key_id, f"{'enabled' if enabled else 'disabled'}@{now}"
    )
    _apply_state(engine, key_id, enabled, now, {})


async def apply_key_states(engine: Engine) -> None:
    """Apply the stored operator states; a later key-tester verdict wins over an older one."""
    store: Any = engine.ledger
    if not hasattr(store, "get_setting"):
        return
    states: list[tuple[str, bool, float]] = []
    for key_id in list(engine.keys):
        value = await store.get_setting(KEY_STATE_SETTING + key_id)
        if value:
            state, _, at = value.partition("@")
            states.append((key_id, state == "enabled", float(at or 0)))
    probed: dict[str, float] = {}
    if any(enabled for _, enabled, _ in states):  # only an enable is weighed against them:
        for r in await store.probe_results():  # a scan of the ledger, so not at every start
            if r.status != "ok":
                probed[r.key_id] = max(probed.get(r.key_id, 0.0), r.ts)
    for key_id, enabled, at in states:
        _apply_state(engine, key_id, enabled, at, probed)
    enabled_at = {key_id: at for key_id, enabled, at in states if enabled}
    for key in list(engine.keys.values()):
        value = await store.get_setting(INVALID_SETTING + key.id)
        if not value:
            continue
        digest, _, rest = value.partition("@")
        at, _, reason = rest.partition("@")
        # A rejected key stays invalid until an operator enables it or replaces its secret.
        if digest == secret_digest(key.secret) and enabled_at.get(key.id, 0.0) < float(at or 0):
            engine.health.setdefault(key.id, hl.Health()).disabled_reason = reason


def _apply_state(
    engine: Engine, key_id: str, enabled: bool, at: float, probed: dict[str, float]
) -> None:
    if enabled:
        if probed.get(key_id, 0.0) <= at:
            engine.enable_key(key_id)
    else:
        engine.health.setdefault(key_id, hl.Health()).disabled_reason = "disabled by an operator"
