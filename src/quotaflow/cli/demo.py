"""``quotaflow demo``: fake providers, small-quota keys, the gateway and synthetic agents, live.

Everything runs in one process on the embedded SQLite default: fake providers of each
protocol quotaflow has an adapter for, a gateway on ``--port``, and a handful of agents
sending chat requests through ``/v1``. A refreshing table shows each key's state, its quotas
and where the traffic goes.

The switching scenario keeps switching for as long as it runs: every quota resets each
minute (one also counts an hour), together they hold about the traffic of four agents, so
keys fill up and run out near the end of a minute and come back at the next; and every few
seconds one provider answers a rate-limit 429 with ``Retry-After``, its key cools down, the
traffic moves to the others and returns when the cool-down ends.

``--scenario failover`` runs one key per protocol in priority order (OpenAI, Anthropic,
Gemini) with small one-time quotas on the first two: the traffic fails over from OpenAI to
Anthropic to Gemini as each runs dry, and nothing is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import random
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import click
from aiohttp import web
from rich.live import Live

from quotaflow.adapters import BUILT_IN
from quotaflow.cli.demo_view import Traffic, closing_sentence, render
from quotaflow.config.load import parse_spec, resolve
from quotaflow.config.model import Config
from quotaflow.fake_provider import FakeProviderConfig, running_fake_provider
from quotaflow.fake_provider.cli import PortInUse
from quotaflow.fake_provider.faults import Fault
from quotaflow.fake_provider.server import FakeProviderHandle
from quotaflow.runtime import build_gateway, data_home
from quotaflow.web.app import create_app

# (provider name, protocol, model, key limits). Minute windows only (one hour window), sized
# so that four agents (about 280 requests a minute, ~36 tokens each) fill them near the end of
# each minute: the keys run out in turn, few requests are refused, and the next minute resets
# them all. The hour window makes the router spare that key as its hour fills.
DEMO_KEYS: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    (
        "groq",
        "openai",
        "llama-3.1-8b-instant",
        [{"metric": "tokens", "window": "minute", "amount": 2800}],
    ),
    (
        "openai",
        "openai",
        "gpt-4o-mini",
        [
            {"metric": "requests", "window": "minute", "amount": 75},
            {"metric": "tokens", "window": "hour", "amount": 100_000},
        ],
    ),
    (
        "anthropic",
        "anthropic",
        "claude-haiku-4-5",
        [{"metric": "tokens", "window": "minute", "amount": 2800}],
    ),
    (
        "gemini",
        "gemini",
        "gemini-2.0-flash",
        [{"metric": "requests", "window": "minute", "amount": 45}],
    ),
]
# Every COOL_EVERY_S one provider (in turn) answers one request with a 429 and Retry-After.
COOL_EVERY_S = 12.0
COOL_FOR_S = 6.0

# The failover scenario: one key per protocol, tried in this order; the first two run dry.
FAILOVER_KEYS: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    ("openai", "openai", "gpt-4o-mini", [{"metric": "tokens", "window": "once", "amount": 400}]),
    (
        "anthropic",
        "anthropic",
        "claude-haiku-4-5",
        [{"metric": "tokens", "window": "once", "amount": 400}],
    ),
    (
        "gemini",
        "gemini",
        "gemini-2.0-flash",
        [{"metric": "tokens", "window": "once", "amount": 1_000_000}],
    ),
]
SCENARIOS = ("switching", "failover")
# Each agent's pause between two requests: switching paces four agents to what its quotas
# hold; failover sends faster, so the one-time quotas run dry within seconds.
PAUSE_S = {"switching": (0.4, 1.2), "failover": (0.15, 0.5)}


def _secret(provider: str) -> str:
    return f"sk-demo-{provider}-0000"


def demo_config(urls: dict[str, str], scenario: str = "switching") -> Config:
    """The demo's configuration for fake upstreams at ``urls`` (by protocol)."""
    providers = []
    deployments = []
    failover = scenario == "failover"
    for name, protocol, model, limits in FAILOVER_KEYS if failover else DEMO_KEYS:
        if protocol not in urls:
            continue
        base = urls[protocol] + (
            "/v1" if protocol == "openai" else "/v1beta" if protocol == "gemini" else ""
        )
        key = {"id": f"{name}-demo", "secret": _secret(name), "limits": limits}
        providers.append(
            {"name": name, "protocol": protocol, "base_url": base, "models": [model], "keys": [key]}
        )
        deployments.append({"provider": name, "model": model})
    settings: dict[str, Any] = {
        "strategy": "priority" if failover else "headroom",
        "max_wait_s": 0,
        "preferred_providers": [],
    }
    spec = parse_spec(
        {
            "server": {"dashboard_read_only_on_loopback": True},  # the dashboard, no token
            "settings": settings,
            "providers": providers,
            "routes": [{"name": "demo", "deployments": deployments}],
        }
    )
    return resolve(spec, {}, source="demo")


@contextlib.asynccontextmanager
async def fake_upstreams() -> AsyncIterator[dict[str, FakeProviderHandle]]:
    async with contextlib.AsyncExitStack() as stack:
        handles: dict[str, FakeProviderHandle] = {}
        for protocol in BUILT_IN:
            cfg = FakeProviderConfig(protocol=protocol, latency_ms=40, completion_tokens=24)
            handles[protocol] = await stack.enter_async_context(running_fake_provider(cfg))
        yield handles


async def rate_limit_in_turn(handles: dict[str, FakeProviderHandle], stop: asyncio.Event) -> None:
    """Make one provider after the other answer a request with 429 + Retry-After."""
    turns = itertools.cycle([(n, p) for n, p, _, _ in DEMO_KEYS if p in handles])
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), COOL_EVERY_S)
        name, protocol = next(turns)
        fault = Fault(kind="status", status=429, retry_after=COOL_FOR_S, key=_secret(name))
        handles[protocol].state.faults.add(fault)


async def agent(
    name: str,
    url: str,
    traffic: Traffic,
    rng: random.Random,
    stop: asyncio.Event,
    pause_s: tuple[float, float],
) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            body = {
                "model": "demo",
                "messages": [
                    {"role": "user", "content": f"{name}: summarise ticket #{rng.randint(1, 9999)}"}
                ],
                "max_tokens": rng.choice([16, 24, 32]),
            }
            status = 0
            try:
                async with session.post(
                    url + "/v1/chat/completions", json=body, headers={"x-quotaflow-agent": name}
                ) as r:
                    status = r.status
                    data = await r.json()
                    provider = r.headers.get("x-quotaflow-provider")
                    key = r.headers.get("x-quotaflow-key")
            except aiohttp.ClientError as exc:
                traffic.events.appendleft(f"{name}: {exc}")
                provider, key, data = None, None, {}
            if stop.is_set() and provider is None:
                break  # the gateway is closing: not a refusal
            answered = provider if status == 200 else None
            traffic.record(answered, key)
            if answered is None:
                msg = (data.get("error") or {}).get("message", "") if isinstance(data, dict) else ""
                traffic.events.appendleft(f"[red]{name}: {msg[:110]}[/red]")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(*pause_s))


async def run_demo(
    port: int,
    agents: int,
    duration: float | None,
    home: Path,
    seed: int,
    scenario: str = "switching",
) -> Traffic:
    traffic = Traffic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake_upstreams() as handles:
        config = demo_config({p: h.url for p, h in handles.items()}, scenario)
        shutil.rmtree(home, ignore_errors=True)
        gw = build_gateway(config, home)
        runner = web.AppRunner(create_app(gw), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse("127.0.0.1", port) from None
            raise click.ClickException(
                f"cannot listen on 127.0.0.1:{port}: {exc.strerror}"
            ) from None
        sockets = getattr(site._server, "sockets", None) or []
        actual = sockets[0].getsockname()[1] if sockets else port
        url = f"http://127.0.0.1:{actual}"
        click.echo(f"dashboard: {url}/  (open it in a browser: live, read-only)")
        rng = random.Random(seed)
        pause = PAUSE_S[scenario]
        tasks = [
            asyncio.create_task(
                agent(f"agent-{i + 1}", url, traffic, random.Random(rng.random()), stop, pause)
            )
            for i in range(agents)
        ]
        if scenario == "switching":
            tasks.append(asyncio.create_task(rate_limit_in_turn(handles, stop)))
        if duration is not None:
            loop.call_later(duration, stop.set)
        try:
            with Live(
                await render(gw, traffic, url), refresh_per_second=4, transient=False
            ) as live:
                while not stop.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.25)
                    live.update(await render(gw, traffic, url))
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()
    return traffic


@click.command()
@click.option(
    "--port", type=int, default=5050, show_default=True, help="Gateway port (0 picks a free one)."
)
@click.option(
    "--agents",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Synthetic agents sending requests (the quotas hold about four).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="Data folder (the demo uses <home>/demo and starts it afresh).",
)
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Seed of the synthetic traffic."
)
@click.option(
    "--scenario",
    type=click.Choice(SCENARIOS),
    default="switching",
    show_default=True,
    help="switching: keys fill, run out, cool down and come back, minute after minute; "
    "failover: OpenAI → Anthropic → Gemini as one-time quotas run dry.",
)
def demo(
    port: int, agents: int, duration: float | None, home: str | None, seed: int, scenario: str
) -> None:
    """Watch quotaflow switch keys live: fake providers, small quotas, synthetic agents."""
    from quotaflow.cli.serve import install_uvloop

    install_uvloop()
    traffic = asyncio.run(
        run_demo(port, agents, duration, data_home(home) / "demo", seed, scenario)
    )
    click.echo("\n" + closing_sentence(traffic, agents))
