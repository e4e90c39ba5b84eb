"""The resolved configuration the engine runs on: frozen, presets applied, limits parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from quotaflow.config.prices import priced_model
from quotaflow.engine.catalog import Deployment, Key, ModelInfo, Provider, Route
from quotaflow.engine.limits import Limit
from quotaflow.engine.strategies.base import StrategySettings

if TYPE_CHECKING:  # the pydantic schema is imported when a configuration is loaded
    from quotaflow.config.schema import (
        AgentSpec,
        NotifySpec,
        ServerSpec,
        SettingsSpec,
        StorageSpec,
    )


_TIERS = {"simple": "cheap", "complex": "capable"}


def _default_storage() -> StorageSpec:
    from quotaflow.config.schema import StorageSpec

    return StorageSpec()


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSpec
    settings: SettingsSpec
    tz: ZoneInfo
    providers: dict[str, Provider]
    keys: tuple[Key, ...]
    routes: dict[str, Route]  # explicit routes, then one per served model name, then "auto"
    global_limits: tuple[Limit, ...] = ()
    source: str = "environment"
    agents: tuple[AgentSpec, ...] = ()  # declared in the YAML; more are added by the admin API
    storage: StorageSpec = field(default_factory=_default_storage)  # where state lives
    strategy: StrategySettings = field(default_factory=StrategySettings)  # from settings
    notify: tuple[NotifySpec, ...] = ()  # alert webhooks, QUOTAFLOW_WEBHOOK_URL's included
    notes: tuple[str, ...] = ()  # start-up hints (a key variable under a name not read, …)

    def route(self, model: str) -> Route | None:
        """The route for ``model``: a route or catalog name, else ``provider/model`` naming
        a configured provider, else every provider whose name patterns match (by priority).
        A model outside the catalog is passed through with neutral defaults and no price."""
        route = self.routes.get(model)
        if route is not None:
            return route
        prefix, slash, rest = model.partition("/")
        named = self.providers.get(prefix) if slash and rest else None
        if named is not None:
            pairs = [(named, rest)]
        else:
            pairs = [(p, model) for p in self.providers.values() if p.serves(model)]
        if not pairs:
            return self.aliased(model)
        pairs.sort(key=lambda pm: pm[0].priority)
        deployments = tuple(
            Deployment(p.name, self.priced(p, name), None, 1.0, p.priority, n)
            for n, (p, name) in enumerate(pairs)
        )
        return Route(model, deployments, implicit=True)

    def priced(self, provider: Provider, name: str) -> ModelInfo:
        """``name`` at ``provider``: its catalog entry, else neutral defaults at the price
        ``settings.unpriced`` gives a model with no known price — never a silent $0."""
        return priced_model(provider, name, self.settings.unpriced)

    def tier_route(self, complexity: str, named: Route) -> Route:
        """Seed 001's complexity hint, as written: ``simple`` → every catalog model of the cheap
        tier (the cheapest first, ranked by cost), ``complex`` → the capable tier, whatever
        model the request names and whatever the strategy. ``named`` is kept when no
        configured model has that tier."""
        tier = _TIERS.get(complexity)
        deployments = [
            Deployment(p.name, m, m.tier, 1.0, p.priority)
            for p in self.providers.values()
            for m in p.models.values()
            if m.tier == tier and m.kind == "chat"  # an embedding model never answers a chat
        ]
        if not deployments:
            return named
        if tier == "cheap":
            deployments.sort(key=lambda d: (d.model.price.input + d.model.price.output, d.priority))
        ordered = tuple(
            Deployment(d.provider, d.model, d.tier, d.weight, d.priority, n)
            for n, d in enumerate(deployments)
        )
        strategy = "cost" if tier == "cheap" else named.strategy
        return Route(f"complexity:{complexity}", ordered, strategy=strategy, implicit=True)

    def pass_through(self) -> dict[str, list[str]]:
        """Per provider, the model-name patterns it takes beyond the catalog."""
        return {p.name: list(p.patterns) for p in self.providers.values() if p.patterns}

    def aliased(self, model: str) -> Route | None:
        """The route ``settings.model_aliases`` gives a name nothing serves: so a team with
        only Groq and Gemini keys can run Claude Code (``claude-*: smart``)."""
        for pattern, target in self.settings.model_aliases.items():
            if fnmatchcase(model, pattern):
                return self.routes.get(target)
        return None
