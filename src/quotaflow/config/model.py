"""The resolved configuration the engine runs on: frozen, presets applied, limits parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from quotaflow.engine.catalog import Key, Provider, Route
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

    def route(self, model: str) -> Route | None:
        route = self.routes.get(model)
        return route if route is not None else self.aliased(model)

    def aliased(self, model: str) -> Route | None:
        """The route ``settings.model_aliases`` gives a name nothing serves: so a team with
        only Groq and Gemini keys can run Claude Code (``claude-*: smart``)."""
        for pattern, target in self.settings.model_aliases.items():
            if fnmatchcase(model, pattern):
                return self.routes.get(target)
        return None
