"""A gateway in front of one fake provider, as the agent CLIs' end-to-end tests use it:
one provider ``p`` of a wire protocol, one key, one agent with its key, and optionally the
``model_aliases`` that let the agent's own model names through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.procs import Proc, fake_provider, gateway

BASE = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta"}


@dataclass(frozen=True)
class Served:
    gw: Proc
    home: Path
    protocol: str
    model: str


@dataclass(frozen=True)
class Agent:
    name: str
    key: str
    provider_key: str
    aliases: str | None = None  # a name pattern sent to the served model


def config(protocol: str, url: str, model: str, agent: Agent) -> str:
    aliases = f"  model_aliases: {{'{agent.aliases}': {model}}}\n" if agent.aliases else ""
    return f"""settings:
  strategy: priority
  max_wait_s: 0
{aliases}providers:
  - name: p
    protocol: {protocol}
    base_url: {url}{BASE[protocol]}
    timeout_s: 5
    models:
      - {{name: {model}, context_window: 200000, input: 1.0, output: 5.0}}
    keys:
      - {{id: a, secret: {agent.provider_key}}}
agents:
  - {{name: {agent.name}, key: {agent.key}}}
"""


@contextlib.contextmanager
def serving(protocol: str, model: str, agent: Agent, home: Path) -> Iterator[Served]:
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(fake_provider(protocol, "--key", agent.provider_key))
        gw = stack.enter_context(gateway(config(protocol, fake.url, model, agent), home))
        yield Served(gw, home, protocol, model)
