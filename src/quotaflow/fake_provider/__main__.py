"""``python -m quotaflow.fake_provider``: the same options as ``quotaflow fake-provider``."""

from quotaflow.fake_provider.cli import fake_provider

fake_provider(prog_name="python -m quotaflow.fake_provider")
