"""quotaflow: one gateway in front of all of a team's LLM provider keys.

The library API (imported lazily, so ``import quotaflow`` starts nothing)::

    from quotaflow import Gateway, Client

    with Gateway() as gw:                                   # the engine in-process
        print(gw.make_llm_request(prompt="Hello", max_tokens=50)["response"]["text"])

    client = Client("http://127.0.0.1:5050")               # a running server's advisory API
    with client.choose(tokens_estimate=2000) as lease:
        ...  # call lease.provider with lease.api_key, then lease.report(tokens_used=...)

Seed-era names stay importable: ``RequestRouter`` and ``APIManager`` (seed 002) are
:class:`Gateway`, ``UsageMonitor`` is seed 002's monitor, ``unified_ai_service`` is seed
003's service.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from quotaflow._version import __version__

_EXPORTS: dict[str, tuple[str, str]] = {
    "Gateway": ("quotaflow.library", "Gateway"),
    "AsyncGateway": ("quotaflow.library", "AsyncGateway"),
    "RequestRouter": ("quotaflow.library", "Gateway"),
    "APIManager": ("quotaflow.library", "Gateway"),
    "UnifiedAIService": ("quotaflow.library", "UnifiedAIService"),
    "unified_ai_service": ("quotaflow.library", "unified_ai_service"),
    "Client": ("quotaflow.client", "Client"),
    "Lease": ("quotaflow.client", "Lease"),
    "ClientError": ("quotaflow.client", "ClientError"),
    "UsageMonitor": ("quotaflow.library.monitor", "UsageMonitor"),
    "QuotaflowError": ("quotaflow.errors", "QuotaflowError"),
    "ConfigError": ("quotaflow.errors", "ConfigError"),
    "BadRequest": ("quotaflow.errors", "BadRequest"),
    "NotFound": ("quotaflow.errors", "NotFound"),
    "QuotaExhausted": ("quotaflow.errors", "QuotaExhausted"),
    "UpstreamError": ("quotaflow.errors", "UpstreamError"),
}

__all__ = [
    "APIManager",
    "AsyncGateway",
    "BadRequest",
    "Client",
    "ClientError",
    "ConfigError",
    "Gateway",
    "Lease",
    "NotFound",
    "QuotaExhausted",
    "QuotaflowError",
    "RequestRouter",
    "UnifiedAIService",
    "UpstreamError",
    "UsageMonitor",
    "__version__",
    "unified_ai_service",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from quotaflow.client import Client, ClientError, Lease
    from quotaflow.errors import (
        BadRequest,
        ConfigError,
        NotFound,
        QuotaExhausted,
        QuotaflowError,
        UpstreamError,
    )
    from quotaflow.library import AsyncGateway, Gateway, UnifiedAIService, unified_ai_service
    from quotaflow.library.monitor import UsageMonitor

    RequestRouter = Gateway
    APIManager = Gateway


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'quotaflow' has no attribute {name!r}")
    value = getattr(import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
