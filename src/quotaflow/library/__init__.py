"""The in-process library: :class:`Gateway` (sync), :class:`AsyncGateway`, seed 003's
service and seed 002's :class:`UsageMonitor`."""

from quotaflow.library.gateway import AsyncGateway, Gateway, UnifiedAIService, unified_ai_service
from quotaflow.library.monitor import UsageMonitor

__all__ = ["AsyncGateway", "Gateway", "UnifiedAIService", "UsageMonitor", "unified_ai_service"]
