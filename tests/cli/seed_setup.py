"""A configured environment for replaying the seeds' Python examples against the fake provider."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from quotaflow.fake_provider import FakeProviderConfig
from tests.cli.fakes import fake_in_thread, provider_config

SEED_PROVIDERS = {
    "cohere": ["command-r-08-2024"],
    "groq": ["llama-3.3-70b-versatile", "llama-3.1-8b-instant"],
    "openrouter": ["claude-3-haiku"],
    "anthropic": ["claude-sonnet-4-5"],
    "openai": ["gpt-4.1"],
}


@contextlib.contextmanager
def seed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: object
) -> Iterator[Path]:
    """A fake provider behind every seed provider name; the config and data folder in env."""
    with fake_in_thread(FakeProviderConfig(protocol="openai")) as fake:
        lim = [{"metric": "tokens", "window": "month", "amount": 1_000_000}]
        providers = [
            provider_config(
                name,
                fake.base_url,
                [f"{name}-secret-{i}" for i in (1, 2)],
                models,
                key_limits=lim,
                priority=n,
            )
            for n, (name, models) in enumerate(SEED_PROVIDERS.items(), start=1)
        ]
        cfg = tmp_path / "quotaflow.yaml"
        cfg.write_text(yaml.safe_dump({"providers": providers, **extra}))
        monkeypatch.setenv("QUOTAFLOW_CONFIG", str(cfg))
        monkeypatch.setenv("QUOTAFLOW_HOME", str(tmp_path / "data"))
        monkeypatch.chdir(tmp_path)
        yield tmp_path
