"""The orchestrator: one :class:`Gateway` behind every surface (see :mod:`.core`)."""

from quotaflow.gateway.core import Gateway
from quotaflow.gateway.outcomes import CallContext, ChatOutcome

__all__ = ["CallContext", "ChatOutcome", "Gateway"]
