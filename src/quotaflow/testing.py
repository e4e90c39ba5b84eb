"""Public helpers for testing code built on quotaflow: a frozen clock and small factories.

The factories build the engine's frozen values with sensible defaults so a test states
only what it is about::

    clock = FrozenClock()
    lim = limit("key:k1", "tokens", "day", 1_000)
    k = key("k1", "openai", limits=(lim,))
    cfg = config({"providers": [{"name": "openai", "keys": [{"secret": "sk-test"}]}]})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quotaflow.clock import Clock, FrozenClock, SystemClock
from quotaflow.config.load import parse_spec, resolve
from quotaflow.config.model import Config
from quotaflow.engine.catalog import Deployment, Key, ModelInfo, Provider
from quotaflow.engine.limits import Limit
from quotaflow.engine.pricing import Price
from quotaflow.engine.windows import parse_window
from quotaflow.types import Metric

__all__ = [
    "Clock",
    "FrozenClock",
    "SystemClock",
    "config",
    "deployment",
    "key",
    "limit",
    "model",
    "provider",
]


def limit(scope: str, metric: Metric, window: str, amount: float) -> Limit:
    """A :class:`Limit` with its window given as text (``"day"``, ``"rolling 60s"``, …)."""
    return Limit.make(scope, metric, parse_window(window), amount)


def model(
    name: str = "test-model",
    *,
    tier: str | None = None,
    max_output: int = 4_096,
    context_window: int = 128_000,
    price: Price | None = None,
) -> ModelInfo:
    """A :class:`ModelInfo`; free unless ``price`` is given."""
    return ModelInfo(name, tier, context_window, max_output, price or Price())


def provider(
    name: str = "p",
    *,
    models: Sequence[ModelInfo] = (),
    limits: Sequence[Limit] = (),
    protocol: str = "openai",
    base_url: str = "http://127.0.0.1:9",
    priority: int = 100,
) -> Provider:
    """A :class:`Provider` serving ``models`` (one default model when none are given)."""
    infos = {m.name: m for m in (models or (model(),))}
    return Provider(name, protocol, base_url, infos, tuple(limits), priority)


def key(
    id: str,
    provider: str = "p",
    *,
    limits: Sequence[Limit] = (),
    priority: int = 0,
    weight: float = 1.0,
    enabled: bool = True,
    secret: str = "sk-test-0000000000",
) -> Key:
    """A :class:`Key` labelled by its id."""
    return Key(id, provider, secret, id, priority, weight, enabled, tuple(limits))


def deployment(
    provider: str = "p",
    info: ModelInfo | None = None,
    *,
    tier: str | None = None,
    weight: float = 1.0,
    priority: int = 0,
    order: int = 0,
) -> Deployment:
    """A :class:`Deployment` of ``info`` (the default model when ``None``) on ``provider``."""
    m = info or model()
    return Deployment(provider, m, tier if tier is not None else m.tier, weight, priority, order)


def config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """A resolved :class:`Config` from a YAML-shaped mapping; ``env`` defaults to empty."""
    env = {} if env is None else env
    return resolve(parse_spec(dict(data), env), env, source="test")
