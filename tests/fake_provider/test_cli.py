"""``python -m quotaflow.fake_provider`` and ``quotaflow fake-provider``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import click
import pytest
from click.testing import CliRunner

from quotaflow.fake_provider import KeyState
from quotaflow.fake_provider.cli import build_keys, fake_provider, parse_key_option

LISTENING = re.compile(r"^fake-provider \((\w+)\) listening on (http://127\.0\.0\.1:(\d+))$")


@pytest.fixture
def anthropic_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    args = [
        sys.executable, "-m", "quotaflow.fake_provider", "--protocol", "anthropic", "--port", "0",
        "--key", "good=20", "--key", "free", "--invalid-key", "dead", "--completion-tokens", "3",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        line = proc.stdout.readline().strip()
        match = LISTENING.match(line)
        if match is None:
            proc.kill()
            pytest.fail(f"unexpected first line {line!r}; stderr: {proc.stderr.read()}")
        assert match.group(1) == "anthropic"
        assert int(match.group(3)) > 0
        yield proc, match.group(2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


async def test_subprocess_serves_on_the_printed_port_and_stops_on_sigterm(
    anthropic_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = anthropic_process
    body = {"model": "c", "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}]}
    statuses = []
    async with aiohttp.ClientSession() as http:
        for key in ("good", "good", "free", "dead", "stranger"):
            headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
            async with http.post(url + "/v1/messages", json=body, headers=headers) as resp:
                statuses.append(resp.status)
                if key == "free":
                    assert (await resp.json())["content"][0]["text"] == "alpha beta gamma"
        async with http.get(url + "/_fake/stats") as resp:
            stats = await resp.json()
    # good=20: 11 tokens used after the first call, so the second is served; stats show 22.
    assert statuses == [200, 200, 200, 401, 401]
    assert stats["by_key"]["good"]["used_tokens"] == 22
    assert stats["by_key"]["good"]["quota_tokens"] == 20
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_help_lists_every_option() -> None:
    result = CliRunner().invoke(fake_provider, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--protocol", "--host", "--port", "--latency-ms", "--chunk-delay-ms", "--completion-tokens",
        "--rpm", "--tpm", "--key SECRET[=QUOTA]", "--invalid-key SECRET", "--seed",
    ):  # fmt: skip
        assert option in result.output
    assert "[openai|anthropic|gemini]" in result.output
    assert "ECHO:" in result.output
    assert "CALL_TOOL" in result.output
    # What the control bodies take, field by field.
    for field in ("kind", "status", "retry_after", "count", "after_chunks", "quota_tokens"):
        assert field in result.output
    for kind in ("timeout", "cut_stream", "reset_connection", "context_length"):
        assert kind in result.output


def test_bad_options_are_rejected() -> None:
    runner = CliRunner()
    assert runner.invoke(fake_provider, ["--protocol", "cohere"]).exit_code == 2
    result = runner.invoke(fake_provider, ["--key", "k=lots"])
    assert result.exit_code == 2
    assert "QUOTA must be an integer" in result.output


def test_key_options_build_the_keys_config() -> None:
    assert build_keys((), ()) is None
    assert build_keys(("a=5", "b"), ("c", "b")) == {
        "a": KeyState(quota_tokens=5),
        "b": KeyState(invalid=True),
        "c": KeyState(invalid=True),
    }
    assert parse_key_option("sk=x=1") == ("sk=x", KeyState(quota_tokens=1))
    assert parse_key_option("c2stYQ==") == ("c2stYQ==", KeyState())


def test_key_option_errors() -> None:
    with pytest.raises(click.BadParameter):
        parse_key_option("=5")
    with pytest.raises(click.BadParameter):
        parse_key_option("k=-1")
