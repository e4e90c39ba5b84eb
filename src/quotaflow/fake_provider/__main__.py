"""``python -m quotaflow.fake_provider``: the same options as ``quotaflow fake-provider``."""

from quotaflow.cli.fake_provider_cmd import fake_provider

fake_provider(prog_name="python -m quotaflow.fake_provider")
