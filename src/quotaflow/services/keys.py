"""Keys and providers added at runtime (seed 000's ``/api/add_key``), persisted encrypted.

A key added here has one limit: ``quota_total`` tokens, ``once`` (its total quota, reset
by ``/api/reset_quota``), or none when it is added without a quota. A provider name not configured yet but naming a preset —
or an alias of one (``claude`` → anthropic, ``google`` → gemini, …) — is created from the
preset under the name given, so seed-era clients see their own names back. Everything is
written to the store before the gateway routes to it, and restored at start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key
from quotaflow.engine.limits import Limit
from quotaflow.engine.windows import Window
from quotaflow.errors import BadRequest
from quotaflow.gateway import Gateway
from quotaflow.gateway.booking import DEPLETED_SETTING, INVALID_SETTING, secret_digest
from quotaflow.services.holds import Holds
from quotaflow.storage.management import ManagedKeyRow, ManagementStore
from quotaflow.storage.secrets import SecretBox, secret_hash

KEY_ID_SETTING = "key_id:"  # + key id → the fingerprint of the secret it was given to
ALIASES = {"claude": "anthropic", "google": "gemini", "moonshot": "kimi", "hf": "huggingface"}
PROVIDER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ADDED = "added"  # where the quota of a key added at runtime comes from (its limit's source)


def resolve_provider(gw: Gateway, name: str) -> str | None:
    """The configured provider ``name`` refers to (itself or an alias), or ``None``."""
    providers = gw.config.providers
    if name in providers:
        return name
    lowered = name.lower()
    if lowered in providers:
        return lowered
    alias = ALIASES.get(lowered)
    if alias is not None and alias in providers:
        return alias
    for short, preset in ALIASES.items():
        if preset == lowered and short in providers:
            return short
    return None


def next_number(provider: str, taken: Iterable[str]) -> int:
    """One more than the highest ``n`` of the ``<provider>-<n>`` ids in ``taken`` (1: none)."""
    own = re.compile(re.escape(provider) + r"-([0-9]+)")
    numbers = [int(m.group(1)) for t in taken if (m := own.fullmatch(t))]
    return max(numbers, default=0) + 1


def preset_of(name: str) -> str | None:
    from quotaflow.config.presets import PRESETS

    lowered = name.lower()
    if lowered in PRESETS:
        return lowered
    alias = ALIASES.get(lowered)
    return alias if alias in PRESETS else None


def unknown_provider(gw: Gateway, name: str) -> BadRequest:
    from quotaflow.config.presets import PRESETS

    known = sorted(gw.config.providers)
    return BadRequest(
        f"unknown provider {name!r} (configured: {', '.join(known) or 'none'}; "
        f"presets: {', '.join(sorted({*PRESETS, *ALIASES}))})",
        code="unknown_provider",
    )


@dataclass(frozen=True, slots=True)
class Added:
    key: Key
    created: bool  # False: an existing key's quota was updated
    provider_created: bool


class ManagedKeys:
    """Runtime keys and providers: add, update, remove, restore."""

    def __init__(
        self, gw: Gateway, store: ManagementStore, box: SecretBox, holds: Holds | None = None
    ) -> None:
        self.gw = gw
        self.store = store
        self.box = box
        self.holds = holds if holds is not None else Holds()  # /api/choose's, released on remove
        self._rows: dict[str, ManagedKeyRow] = {}
        self._lock = asyncio.Lock()  # a restore never interleaves with an add or remove

    def is_managed(self, key_id: str) -> bool:
        return key_id in self._rows

    async def restore(self) -> int:
        """Bring the gateway in line with the store (idempotent: run at start, and again when
        another replica changed the shared store): create the stored providers, add new
        keys, re-add keys whose quota or secret changed, stop routing to deleted ones.
        Returns how many keys were added or changed."""
        from quotaflow.config.presets import PRESETS

        async with self._lock:
            await self.box.unlock(self.store)
            for name, preset in await self.store.managed_providers():
                if name not in self.gw.config.providers and preset in PRESETS:
                    self._create_provider(name, preset)
            rows = await self.store.managed_keys()
            n = 0
            for row in rows:
                if row.provider not in self.gw.config.providers:
                    continue
                known = self._rows.get(row.id)
                if known is None and row.id in self.gw.keys:
                    continue  # a key of the configuration file keeps its id
                if known is not None and (known.quota_total, known.secret_hash) == (
                    row.quota_total,
                    row.secret_hash,
                ):
                    continue
                secret, sealed_before = self.box.open(row.secret_enc, f"the stored key {row.id!r}")
                if sealed_before or row.secret_hash != self.box.fingerprint(secret):
                    row = await self._reseal(row, secret)
                key = self._key(row.id, row.provider, secret, row.quota_total)
                self._rows[row.id] = row
                await self._route_to(key)
                n += 1
            stored = {row.id for row in rows}
            for key_id in [k for k in self._rows if k not in stored]:
                del self._rows[key_id]
                await self._drop(key_id)
            return n

    async def _reseal(self, row: ManagedKeyRow, secret: str) -> ManagedKeyRow:
        """Rewrite a row an older version stored: encrypted with the stretched master key,
        fingerprinted with the keyed hash (the bare SHA-256 of the secret is gone)."""
        if row.secret_hash != secret_hash(secret) and row.secret_hash != self.box.fingerprint(secret):  # fmt: skip
            raise ValueError(f"stored key {row.id!r} does not match its fingerprint")
        new = dataclasses.replace(
            row, secret_enc=self.box.encrypt(secret), secret_hash=self.box.fingerprint(secret)
        )
        await self.store.save_key(new)
        return new

    def _create_provider(self, name: str, preset: str) -> None:
        from quotaflow.config.load import _implicit_routes, resolve
        from quotaflow.config.schema import ConfigSpec, ProviderSpec

        spec = ConfigSpec(providers=[ProviderSpec(name=name, preset=preset)])
        mini = resolve(spec, source="api")  # honours <PRESET>_BASE_URL like the config
        providers = {**self.gw.config.providers, **mini.providers}
        self.gw.add_provider(mini.providers[name], _implicit_routes(providers))

    @staticmethod
    def _key(key_id: str, provider: str, secret: str, quota_total: float) -> Key:
        if quota_total <= 0:  # added without a quota (the API refuses a quota of 0)
            return Key(key_id, provider, secret, key_id, limits=())
        limit = Limit.make(f"key:{key_id}", "tokens", Window("once"), quota_total, ADDED)
        return Key(key_id, provider, secret, key_id, limits=(limit,))

    async def _new_id(self, provider: str, digest: str) -> str:
        """``<provider>-<n>``, ``n`` past every id the provider's keys ever had — live, stored,
        or only remembered by the ledger and the key settings of a deleted key — so a new key
        never inherits a deleted one's usage, states or alert levels. Each id is claimed in
        the store (atomic: replicas sharing it never hand out the same id to two secrets)."""
        taken = {*self.gw.keys, *self._rows, *await self.store.key_ids_seen()}
        n = next_number(provider, taken)
        while True:
            key_id = f"{provider}-{n}"
            if await self.store.claim_setting(KEY_ID_SETTING + key_id, digest) == digest:
                return key_id
            n += 1

    async def add(self, provider_name: str, secret: str, quota_total: float) -> Added:
        """Add a key (or update the quota of the same secret); creates a preset provider."""
        async with self._lock:
            return await self._add(provider_name, secret, quota_total)

    async def _add(self, provider_name: str, secret: str, quota_total: float) -> Added:
        gw = self.gw
        name = resolve_provider(gw, provider_name)
        provider_created = False
        if name is None:
            preset = preset_of(provider_name)
            if preset is None or not PROVIDER_NAME.match(provider_name):
                raise unknown_provider(gw, provider_name)
            name = provider_name
            await self.store.save_provider(name, preset, gw.clock.now())
            self._create_provider(name, preset)
            provider_created = True
        await self.box.unlock(self.store)
        digest = self.box.fingerprint(secret)
        for k in gw.provider_keys(name):
            if k.secret == secret and not self.is_managed(k.id):
                raise BadRequest(
                    f"this key is configured in {gw.config.source} as {k.id!r}; change it there",
                    code="configured_key",
                )
        same = next(
            (r for r in self._rows.values() if r.provider == name and r.secret_hash == digest),
            None,
        )
        key_id = same.id if same else await self._new_id(name, digest)
        row = ManagedKeyRow(
            key_id,
            name,
            self.box.encrypt(secret),
            digest,
            float(quota_total),
            same.created_at if same else gw.clock.now(),
        )
        await self.store.save_key(row)
        self._rows[key_id] = row
        key = self._key(key_id, name, secret, quota_total)
        await self._route_to(key)
        return Added(key, same is None, provider_created)

    async def _route_to(self, key: Key) -> None:
        """Add ``key`` to the gateway (or replace the one of its id), counting its new limits
        from the ledger. A limit it had already keeps its counter (a new amount applies to
        it): counting it again would charge its usage twice."""
        old = self.gw.keys.get(key.id)
        had = {lim.id for lim in old.limits} if old is not None else set()
        self.gw.add_key(key)
        new = [lim for lim in key.limits if lim.id not in had]
        if new:
            await self.gw.rebuild_counters(new)

    async def remove(self, key_id: str) -> Key:
        async with self._lock:
            return await self._remove(key_id)

    async def _remove(self, key_id: str) -> Key:
        if key_id not in self._rows:
            if key_id in self.gw.keys:
                raise BadRequest(
                    f"key {key_id!r} is configured in {self.gw.config.source}; remove it there",
                    code="configured_key",
                )
            raise BadRequest(f"unknown key_id {key_id!r}", code="unknown_key")
        await self.store.delete_key(key_id)
        del self._rows[key_id]
        key = await self._drop(key_id)
        assert key is not None
        return key

    async def _drop(self, key_id: str) -> Key | None:
        """Stop routing to a removed key: its counters and its ``/api/choose`` holds go."""
        key = self.gw.remove_key(key_id)
        for hold in self.holds.drop_key(key_id):
            await self.gw.counters.release(hold.reservation_id)
        return key


# -- operator key states (kept in the store, applied at start) --------------------
KEY_STATE_SETTING = "key_state:"  # + key id → "enabled@<ts>" | "disabled@<ts>"


async def set_key_state(engine: Gateway, key_id: str, enabled: bool) -> None:
    """An operator's enable / disable of a key, kept in the data folder (and applied now)."""
    now = engine.clock.now()
    store: Any = engine.ledger
    await store.set_setting(
        KEY_STATE_SETTING + key_id, f"{'enabled' if enabled else 'disabled'}@{now}"
    )
    health = engine.health.get(key_id)
    was = health.disabled_reason if health is not None else None
    _apply_state(engine, key_id, enabled, now, {})
    key = engine.keys.get(key_id)
    if enabled and was and key is not None:
        state = "invalid" if was.startswith(hl.INVALID_PREFIX) else "disabled"
        engine.observer.key_enabled(key.provider, key_id, state)


async def apply_key_states(engine: Gateway) -> None:
    """Apply the stored operator states; a later key-tester verdict wins over an older one."""
    store = engine.ledger
    states: list[tuple[str, bool, float]] = []
    for key_id in list(engine.keys):
        value = await store.get_setting(KEY_STATE_SETTING + key_id)
        if value:
            state, _, stamp = value.partition("@")
            states.append((key_id, state == "enabled", float(stamp or 0)))
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
        stamp, _, reason = rest.partition("@")
        # A rejected key stays invalid until an operator enables it or replaces its secret.
        if digest == secret_digest(key.secret) and enabled_at.get(key.id, 0.0) < float(stamp or 0):
            engine.health.setdefault(key.id, hl.Health()).disabled_reason = reason
    await _apply_depleted(engine, enabled_at)


async def _apply_depleted(engine: Gateway, enabled_at: dict[str, float]) -> None:
    """A key the provider found empty stays depleted across a restart until its window
    resets, unless an operator enabled it since, its quota was reset or its secret changed."""
    now = engine.clock.now()
    for key in list(engine.keys.values()):
        value = await engine.ledger.get_setting(DEPLETED_SETTING + key.id)
        if not value:
            continue
        digest, _, rest = value.partition("@")
        stamp, _, until_text = rest.partition("@")
        try:
            at, until = float(stamp), float(until_text)
        except ValueError:
            continue  # not written by this version: the next refusal says it again
        if digest == secret_digest(key.secret) and until > now and enabled_at.get(key.id, 0.0) < at:
            h = engine.health.setdefault(key.id, hl.Health())
            h.depleted_until = max(h.depleted_until or until, until)


def _apply_state(
    engine: Gateway, key_id: str, enabled: bool, at: float, probed: dict[str, float]
) -> None:
    if enabled:
        if probed.get(key_id, 0.0) <= at:
            engine.enable_key(key_id)
    else:
        engine.health.setdefault(key_id, hl.Health()).disabled_reason = "disabled by an operator"
