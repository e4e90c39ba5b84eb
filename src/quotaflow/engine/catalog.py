"""The catalog the engine routes over: providers, their models and keys, deployments, routes.

Frozen runtime values built by :mod:`quotaflow.config.load` (or at runtime by the key
services); the engine reads them and never the configuration schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from quotaflow.engine.limits import Limit
from quotaflow.engine.pricing import Price, PriceLike


def mask_secret(secret: str) -> str:
    """``sk-ant-api03-…x9Qf``-style: a recognisable prefix and the last four characters."""
    if len(secret) <= 8:
        return "…" + secret[-2:] if len(secret) > 2 else "…"
    head = secret[: min(7, len(secret) // 4)]
    return f"{head}…{secret[-4:]}"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    tier: str | None
    context_window: int
    max_output: int
    price: PriceLike
    kind: str = "chat"  # "chat" | "embedding": which doors can reach it


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    protocol: str
    base_url: str
    models: dict[str, ModelInfo]
    limits: tuple[Limit, ...] = ()
    priority: int = 100
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    patterns: tuple[str, ...] = ()  # model names it serves beyond ``models`` (fnmatch)
    # Seed 003's OPENAI_MODEL / _MAX_TOKENS / _TEMPERATURE: the model "auto" uses on this
    # provider, and body fields a request gets here when it sets none of its own.
    default_model: str | None = None
    request_defaults: dict[str, float] = field(default_factory=dict)
    in_auto: bool = True  # False: "auto" never falls back to it (ENABLE_OPENAI_FALLBACK=false)

    def serves(self, model: str) -> bool:
        """Whether ``model`` is in its catalog or matches one of its name patterns."""
        return model in self.models or any(fnmatchcase(model, p) for p in self.patterns)

    ttfb_timeout_s: float | None = None  # None: the settings' default
    stream_max_s: float | None = None
    prices_as: str = ""  # the name its models' prices are looked up under (its preset's)

    def model(self, name: str) -> ModelInfo:
        """The model's info; an unknown model gets neutral defaults and no price."""
        info = self.models.get(name)
        return info if info is not None else ModelInfo(name, None, 128_000, 4_096, Price())


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    provider: str
    secret: str = field(repr=False)
    label: str
    priority: int = 0
    weight: float = 1.0
    enabled: bool = True
    limits: tuple[Limit, ...] = ()
    plan: str = "paid"  # "free": the preset's free-tier limits apply (when none configured)

    @property
    def masked(self) -> str:
        return mask_secret(self.secret)

    @property
    def scope(self) -> str:
        return f"key:{self.id}"


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: str
    model: ModelInfo
    tier: str | None
    weight: float = 1.0
    priority: int = 0
    order: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    deployments: tuple[Deployment, ...]
    limits: tuple[Limit, ...] = ()
    strategy: str | None = None
    implicit: bool = False
    fallback_route: str | None = None  # where a content-filtered request is retried
