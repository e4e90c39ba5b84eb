"""The live index of providers, keys and key health that routing reads, and the operator
actions that change it. ``changes`` counts every change of routing state (and every booked
use), so watchers such as the dashboard's event hub can tell cheaply whether to look again.
"""

from __future__ import annotations

from quotaflow.clock import Clock
from quotaflow.config.model import Config
from quotaflow.engine import health as hl
from quotaflow.engine.catalog import Key, Provider, Route
from quotaflow.engine.limits import Limit
from quotaflow.gateway.health_sync import HealthSync
from quotaflow.storage.health.base import HealthStore


class Keyring:
    def __init__(self, config: Config, clock: Clock, health_store: HealthStore | None) -> None:
        self.config = config
        self.keys: dict[str, Key] = {k.id: k for k in config.keys}
        self.health: dict[str, hl.Health] = {k: hl.Health() for k in self.keys}
        # key health shared with the other replicas (Redis counters only)
        self.sync = (
            HealthSync(health_store, self.health, clock) if health_store is not None else None
        )
        self.by_provider: dict[str, list[Key]] = {}
        self.changes = 0
        self.generation = 0  # bumped whenever the set of keys changes
        self._route_limits: dict[tuple[str, ...], list[Limit]] = {}
        self.reindex()

    def reindex(self) -> None:
        by: dict[str, list[Key]] = {}
        for k in self.keys.values():
            by.setdefault(k.provider, []).append(k)
        self.by_provider = by
        self._route_limits = {}
        self.generation += 1

    def health_of(self, key_id: str) -> hl.Health:
        return self.health.setdefault(key_id, hl.Health())

    def notify(self, key_id: str) -> None:
        """Tell the other replicas this key's health changed."""
        if self.sync is not None:
            self.sync.notify(key_id)

    def provider_keys(self, provider: str) -> list[Key]:
        return list(self.by_provider.get(provider, ()))

    def secrets(self) -> list[str]:
        return [k.secret for k in self.keys.values()]

    def all_limits(self) -> list[Limit]:
        out: dict[str, Limit] = {}
        for k in self.keys.values():
            out.update((lim.id, lim) for lim in k.limits)
        for p in self.config.providers.values():
            out.update((lim.id, lim) for lim in p.limits)
        for r in self.config.routes.values():
            out.update((lim.id, lim) for lim in r.limits)
        out.update((lim.id, lim) for lim in self.config.global_limits)
        return list(out.values())

    def route_limits(self, route: Route) -> list[Limit]:
        """Every key and provider limit a route can touch (cached until the keys change)."""
        # Keyed by the providers, not the route's name: a passed-through model name is
        # whatever a client sent, and the limits depend on the providers alone.
        by = tuple(d.provider for d in route.deployments)
        cached = self._route_limits.get(by)
        if cached is not None:
            return cached
        limits: dict[str, Limit] = {}
        for d in route.deployments:
            p = self.config.providers.get(d.provider)
            if p is None:
                continue
            limits.update((lim.id, lim) for lim in p.limits)
            for k in self.by_provider.get(d.provider, ()):
                limits.update((lim.id, lim) for lim in k.limits)
        out = list(limits.values())
        self._route_limits[by] = out
        return out

    # -- operator actions ----------------------------------------------------------------
    def enable_key(self, key_id: str) -> None:
        hl.enable(self.health_of(key_id))
        if self.sync is not None:  # clears it on every replica
            self.sync.notify_reset(key_id, "enable")
        self.changes += 1

    def disable_key(self, key_id: str, reason: str) -> None:
        self.health_of(key_id).disabled_reason = reason
        self.notify(key_id)  # disables it on every replica
        self.changes += 1

    def replenish(self, key_id: str) -> None:
        """The key's quota was reset: it is no longer depleted (here and on every replica)."""
        self.health_of(key_id).depleted_until = None
        if self.sync is not None:
            self.sync.notify_reset(key_id, "replenish")

    def add_provider(self, provider: Provider, routes: dict[str, Route]) -> None:
        self.config.providers[provider.name] = provider
        for name, route in routes.items():
            old = self.config.routes.get(name)
            if old is None or old.implicit:
                self.config.routes[name] = route
        self.reindex()
        self.changes += 1

    def add_key(self, key: Key) -> None:
        self.keys[key.id] = key
        self.health_of(key.id)
        self.reindex()
        self.changes += 1

    def remove_key(self, key_id: str) -> Key | None:
        key = self.keys.pop(key_id, None)
        self.reindex()
        self.changes += 1
        return key
