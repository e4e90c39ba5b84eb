"""A fake LLM provider speaking the real wire formats of OpenAI, Anthropic and Gemini.

Tests, benchmarks and the demo run against it; no test reaches a real provider::

    from quotaflow.fake_provider import FakeProviderConfig, KeyState, running_fake_provider

    config = FakeProviderConfig(protocol="openai", keys={"sk-a": KeyState(quota_tokens=100)})
    async with running_fake_provider(config) as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-a")
        ...
        assert fake.state.config.keys["sk-a"].used_tokens == 24

Out of process: ``quotaflow fake-provider --protocol gemini --port 8001`` or
``python -m quotaflow.fake_provider``. Behaviour is steered through ``/_fake/`` (see
:mod:`.control`); how tokens are counted is in :mod:`.tokens`, what the model answers in
:mod:`.reply`, the injectable faults in :mod:`.fault_actions`.
"""

from quotaflow.fake_provider.config import FakeProviderConfig, KeyState
from quotaflow.fake_provider.server import (
    FakeProviderHandle,
    create_app,
    running_fake_provider,
    serve,
)
from quotaflow.fake_provider.state import FakeProviderState

__all__ = [
    "FakeProviderConfig",
    "FakeProviderHandle",
    "FakeProviderState",
    "KeyState",
    "create_app",
    "running_fake_provider",
    "serve",
]
