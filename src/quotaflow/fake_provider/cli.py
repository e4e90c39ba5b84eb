"""``quotaflow fake-provider``: run the fake LLM provider as a server process."""

from __future__ import annotations

import errno

import click

from quotaflow.fake_provider.config import PROTOCOLS, FakeProviderConfig, KeyState


class PortInUse(click.ClickException):
    """One line naming the busy port and the option that changes it."""

    exit_code = 2  # a usage error, like every quotaflow command's

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"port {port} on {host} is already in use; choose another with --port "
            "(0 picks a free one)"
        )


def parse_key_option(spec: str) -> tuple[str, KeyState]:
    """``SECRET`` or ``SECRET=QUOTA`` → the key and its state.

    The quota follows the *last* ``=``; a spec ending in ``=`` (base64 padding) is all key.
    """
    secret, sep, quota = spec.rpartition("=")
    if not sep or not quota:
        secret, quota = spec, ""
    if not secret:
        raise click.BadParameter(f"{spec!r}: the key is empty", param_hint="--key")
    if not quota:
        return secret, KeyState()
    try:
        tokens = int(quota)
    except ValueError:
        raise click.BadParameter(
            f"{spec!r}: QUOTA must be an integer", param_hint="--key"
        ) from None
    if tokens < 0:
        raise click.BadParameter(f"{spec!r}: QUOTA must be >= 0", param_hint="--key")
    return secret, KeyState(quota_tokens=tokens)


def build_keys(keys: tuple[str, ...], invalid_keys: tuple[str, ...]) -> dict[str, KeyState] | None:
    """The ``keys`` config from the repeated options; ``None`` (accept any key) when there are none."""
    if not keys and not invalid_keys:
        return None
    result = dict(parse_key_option(spec) for spec in keys)
    for secret in invalid_keys:
        result.setdefault(secret, KeyState()).invalid = True
    return result


@click.command("fake-provider")
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="openai",
    show_default=True,
    help="Wire format to speak.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8001,
    show_default=True,
    help="Port to listen on; 0 picks a free one (printed on start).",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay before each response (before the first chunk of a stream).",
)
@click.option(
    "--chunk-delay-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay between stream chunks.",
)
@click.option(
    "--completion-tokens",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Words per reply when the request's max tokens allows.",
)
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    default=None,
    help="Requests per minute per key; more get the protocol's 429.",
)
@click.option(
    "--tpm",
    type=click.IntRange(min=1),
    default=None,
    help="Tokens per minute per key; more get the protocol's 429.",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="SECRET[=QUOTA]",
    help="Accept this key (repeatable), with an optional lifetime token quota. Without any --key every key is accepted.",
)
@click.option(
    "--invalid-key",
    "invalid_keys",
    multiple=True,
    metavar="SECRET",
    help="A key that gets the protocol's authentication error (repeatable).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for response ids.")
def fake_provider(
    protocol: str,
    host: str,
    port: int,
    latency_ms: float,
    chunk_delay_ms: float,
    completion_tokens: int,
    rpm: int | None,
    tpm: int | None,
    keys: tuple[str, ...],
    invalid_keys: tuple[str, ...],
    seed: int,
) -> None:
    """Run a fake LLM provider speaking the real OpenAI, Anthropic or Gemini wire format.

    \b
    Endpoints:
      openai     POST /v1/chat/completions, GET /v1/models
      anthropic  POST /v1/messages
      gemini     POST /{v1,v1beta}/models/MODEL:generateContent
                 POST /{v1,v1beta}/models/MODEL:streamGenerateContent?alt=sse
      control    GET /_fake/stats, POST /_fake/keys, POST|DELETE /_fake/faults,
                 POST /_fake/reset, POST /_fake/config

    \b
    Control bodies (JSON objects; an unknown field is refused with 400):
      /_fake/faults  {"kind": "status" (default) | "timeout" | "cut_stream" |
                      "malformed" | "reset_connection" | "context_length" |
                      "content_filter" | "redirect",
                      "status": 400-599 (default 500; a redirect: 3xx),
                      "retry_after": seconds, "count": requests hit (default 1,
                      -1 = until cleared), "after_chunks": stream chunks first,
                      "key": only this key, "model": only this model}
      /_fake/keys    {"key": secret, "quota_tokens": lifetime tokens or null,
                      "invalid": true|false, "used_tokens": tokens used so far}
      /_fake/config  {"latency_ms", "chunk_delay_ms", "completion_tokens",
                      "rpm", "tpm"}: live changes of the options above

    Replies are "alpha beta gamma …" (one token per word); a user message with
    "ECHO: text" gets "text" back, and "CALL_TOOL" makes it call the first tool.
    Prints "fake-provider (PROTOCOL) listening on http://HOST:PORT" once ready,
    then serves until SIGINT or SIGTERM.
    """
    from quotaflow.fake_provider.server import serve

    config = FakeProviderConfig(
        protocol=protocol,  # type: ignore[arg-type]  # click.Choice(PROTOCOLS) checked it
        keys=build_keys(keys, invalid_keys),
        latency_ms=latency_ms,
        chunk_delay_ms=chunk_delay_ms,
        completion_tokens=completion_tokens,
        rpm=rpm,
        tpm=tpm,
        seed=seed,
    )
    try:
        serve(config, host=host, port=port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUse(host, port) from None
