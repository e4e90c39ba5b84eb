"""Ids of keys added at runtime are never reused: a deleted key's usage, states and counters
stay its own, and the next key added starts at zero under an id no key ever had — against a
real app and a SQLite ledger (restarted on the same data folder)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from quotaflow.services.keys import KEY_STATE_SETTING
from quotaflow.testing import config
from tests.web.app_client import AppClient, served_app

CONFIG = {
    "providers": [{"name": "openai", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1",
                   "models": ["gpt-4o-mini"], "keys": [{"id": "openai-1", "secret": "sk-ids-0001"}]}],
}  # fmt: skip
OLD = {"provider": "openai", "api_key": "sk-ids-old-key-0002", "quota_total": 100}
NEW = {"provider": "openai", "api_key": "sk-ids-brand-new-0003", "quota_total": 100}


class Api(AppClient):
    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = await self.call(method, path, body)
        assert status == 200 and out["success"] is True, out
        return out

    async def used(self, key_id: str) -> float:
        """What the status shows used of the key's own quota."""
        status = await self.ok("GET", "/api/status")
        keys = [k for p in status["providers"] for k in p["keys"] if k["key_id"] == key_id]
        assert len(keys) == 1, keys
        return float(keys[0]["quota_used"])

    async def reported(self) -> dict[str, int]:
        """The ledger's tokens per key (what the usage reports show)."""
        totals = await self.mg.gateway.ledger.usage_totals("key")
        return {t.group: t.total_tokens for t in totals}


def serving(home: Path, token: str | None = None) -> AbstractAsyncContextManager[Api]:
    return served_app(config(CONFIG), home, Api, admin_token=token)


async def used_then_deleted(api: Api) -> str:
    """A key added, used for 40 tokens, then deleted: its id."""
    old_id = str((await api.ok("POST", "/api/add_key", OLD))["key_id"])
    await api.ok("POST", "/api/use", {"provider": "openai", "key_id": old_id, "tokens_used": 40})
    assert await api.used(old_id) == 40
    await api.ok("DELETE", f"/api/keys/{old_id}")
    return old_id


async def test_a_key_added_after_a_deletion_gets_a_new_id_and_starts_at_zero(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    async with serving(home) as api:
        old_id = await used_then_deleted(api)
        added = await api.ok("POST", "/api/add_key", NEW)
        new_id = added["key_id"]
        assert new_id != old_id and added["created"] is True
        assert await api.used(new_id) == 0
        token = api.token
    async with serving(home, token) as api:  # restarted: counters recounted from the ledger
        assert new_id in api.mg.gateway.keys and old_id not in api.mg.gateway.keys
        assert await api.used(new_id) == 0
        reported = await api.reported()
        assert reported[old_id] == 40 and reported.get(new_id, 0) == 0


async def test_ids_are_not_reused_across_a_restart(tmp_path: Path) -> None:
    """Only the ledger remembers the deleted key after a restart: its id stays taken."""
    home = tmp_path / "home"
    async with serving(home) as api:
        old_id = await used_then_deleted(api)
        token = api.token
    async with serving(home, token) as api:
        new_id = (await api.ok("POST", "/api/add_key", NEW))["key_id"]
        assert new_id != old_id
        assert await api.used(new_id) == 0


async def test_an_operator_state_of_a_deleted_key_is_not_inherited(tmp_path: Path) -> None:
    async with serving(tmp_path / "home") as api:
        old_id = str((await api.ok("POST", "/api/add_key", OLD))["key_id"])
        await api.ok("POST", f"/api/keys/{old_id}/disable", {})
        await api.ok("DELETE", f"/api/keys/{old_id}")
        new_id = (await api.ok("POST", "/api/add_key", NEW))["key_id"]
        assert new_id != old_id
        assert await api.mg.store.get_setting(KEY_STATE_SETTING + new_id) is None
        assert not api.mg.gateway.health[new_id].disabled_reason


async def test_deleting_a_key_drops_its_counters(tmp_path: Path) -> None:
    async with serving(tmp_path / "home") as api:
        old_id = await used_then_deleted(api)
        counters: Any = api.mg.gateway.counters
        assert not [b for b in counters._buckets if b.startswith(f"key:{old_id}/")]


async def test_deleting_a_key_releases_its_choose_holds(tmp_path: Path) -> None:
    async with serving(tmp_path / "home") as api:
        await api.ok("POST", "/api/keys/openai-1/disable", {})  # choose picks the added key
        key_id = (await api.ok("POST", "/api/add_key", OLD))["key_id"]
        chosen = await api.ok("POST", "/api/choose", {"tokens_estimate": 30})
        assert chosen["key_id"] == key_id
        counters: Any = api.mg.gateway.counters
        assert len(api.mg.holds) == 1 and counters.reservation_count() == 1
        await api.ok("DELETE", f"/api/keys/{key_id}")
        assert len(api.mg.holds) == 0 and counters.reservation_count() == 0
        body = {"reservation_id": chosen["reservation_id"], "tokens_used": 20}
        status, out = await api.call("POST", "/api/use", body)
        assert status == 400 and out["success"] is False
        assert "unknown or expired" in out["message"]


async def test_a_new_quota_for_the_same_secret_keeps_its_usage_counted_once(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path / "home") as api:
        key_id = (await api.ok("POST", "/api/add_key", OLD))["key_id"]
        await api.ok(
            "POST", "/api/use", {"provider": "openai", "key_id": key_id, "tokens_used": 40}
        )
        updated = await api.ok("POST", "/api/add_key", {**OLD, "quota_total": 200})
        assert updated["key_id"] == key_id and updated["created"] is False
        assert await api.used(key_id) == 40
