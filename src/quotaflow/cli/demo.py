"""``quotaflow demo``: fake providers, small-quota keys, the gateway and synthetic agents, live.

Everything runs in one process on the embedded SQLite default: fake providers of each
protocol quotaflow has an adapter for, a gateway on ``--port``, and a handful of agents
sending chat requests through ``/v1``. A refreshing table shows each key's headroom and
where the traffic goes; keys run out, the traffic switches, minute windows reset and it
switches back. Ctrl-C stops it (or ``--duration``).

``--scenario failover`` runs one key per protocol in priority order (OpenAI, Anthropic,
Gemini) with small one-time quotas on the first two: the traffic fails over from OpenAI to
Anthropic to Gemini as each runs dry, and nothing is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from quotaflow.adapters import BUILT_IN
from quotaflow.config.load import parse_spec, resolve
from quotaflow.config.model import Config
from quotaflow.engine.durations import human_duration
from quotaflow.fake_provider import FakeProviderConfig, running_fake_provider
from quotaflow.gateway import Gateway
from quotaflow.runtime import build_gateway, data_home
from quotaflow.web.app import create_app

STATE_STYLE = {"ok": "green", "warning": "dark_orange", "critical": "red", "depleted": "grey50"}

# (provider name, protocol, model, key limits)
DEMO_KEYS: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    (
        "groq",
        "openai",
        "llama-3.1-8b-instant",
        [{"metric": "tokens", "window": "minute", "amount": 1200}],
    ),
    ("openai", "openai", "gpt-4o-mini", [{"metric": "tokens", "window": "day", "amount": 2500}]),
    (
        "anthropic",
        "anthropic",
        "claude-haiku-4-5",
        [{"metric": "tokens", "window": "rolling 45s", "amount": 1500}],
    ),
    (
        "gemini",
        "gemini",
        "gemini-2.0-flash",
        [{"metric": "requests", "window": "minute", "amount": 20}],
    ),
]


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


@dataclass
class Traffic:
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    last_key: str | None = None
    total: int = 0


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
        providers.append(
            {
                "name": name,
                "protocol": protocol,
                "base_url": base,
                "models": [model],
                "keys": [
                    {"id": f"{name}-demo", "secret": f"sk-demo-{name}-0000", "limits": limits}
                ],
            }
        )
        deployments.append({"provider": name, "model": model})
    spec = parse_spec(
        {
            "server": {"dashboard_read_only_on_loopback": True},  # the dashboard, without a token
            "settings": {
                "strategy": "priority" if failover else "headroom",
                "max_wait_s": 0,
                "preferred_providers": [],
            },
            "providers": providers,
            "routes": [{"name": "demo", "deployments": deployments}],
        }
    )
    return resolve(spec, {}, source="demo")


@contextlib.asynccontextmanager
async def fake_upstreams() -> AsyncIterator[dict[str, str]]:
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for protocol in BUILT_IN:
            cfg = FakeProviderConfig(protocol=protocol, latency_ms=40, completion_tokens=24)
            handle = await stack.enter_async_context(running_fake_provider(cfg))
            urls[protocol] = handle.url
        yield urls


async def agent(
    name: str, url: str, traffic: Traffic, rng: random.Random, stop: asyncio.Event
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
            try:
                async with session.post(
                    url + "/v1/chat/completions", json=body, headers={"x-quotaflow-agent": name}
                ) as r:
                    data = await r.json()
                    key = r.headers.get("x-quotaflow-key")
            except aiohttp.ClientError as exc:
                traffic.events.appendleft(f"{name}: {exc}")
                key, data = None, {}
            traffic.total += 1
            if key:
                traffic.ok[key] += 1
                if traffic.last_key and key != traffic.last_key:
                    traffic.events.appendleft(f"switched {traffic.last_key} → {key}")
                traffic.last_key = key
            else:
                traffic.failed[name] += 1
                msg = (data.get("error") or {}).get("message", "") if isinstance(data, dict) else ""
                traffic.events.appendleft(f"[red]{name}: {msg[:110]}[/red]")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.15, 0.5))


def _bar(share: float, width: int = 20) -> Text:
    filled = min(round(share * width), width)
    return Text("█" * filled + "░" * (width - filled))


async def render(gw: Gateway, traffic: Traffic, url: str) -> Group:
    now = gw.clock.now()
    table = Table(title=f"quotaflow demo — gateway at {url}/v1 (Ctrl-C to stop)", expand=True)
    for col in ("key", "provider", "state", "usage", "used / limit", "window", "ok", "status"):
        table.add_column(col)
    for key in gw.keys.values():
        usages = await gw.counters.snapshot(key.limits, now)
        h = gw.health[key.id]
        for lim in key.limits:
            u = usages[lim.id]
            state = u.state.value
            why = "available"
            if h.disabled_reason:
                why = h.disabled_reason
            elif now < h.cooldown_until:
                why = f"cooling down ({h.cooldown_reason})"
            reset = (
                ""
                if u.resets_at is None
                else f"resets in {human_duration(max(u.resets_at - now, 0))}"
            )
            table.add_row(
                key.label,
                key.provider,
                Text(state.upper(), style=STATE_STYLE[state]),
                _bar(min(u.used_share, 1.0)),
                f"{u.taken:,.0f} / {lim.amount:,.0f} {lim.metric}",
                f"{lim.window} {reset}",
                str(traffic.ok[key.id]),
                why,
            )
    events = Text.from_markup("\n".join(traffic.events) or "waiting for traffic…")
    summary = Text(
        f"requests: {traffic.total}   answered: {sum(traffic.ok.values())}   refused: {sum(traffic.failed.values())}"
    )
    return Group(table, summary, events)


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
    async with fake_upstreams() as urls:
        config = demo_config(urls, scenario)
        shutil.rmtree(home, ignore_errors=True)
        gw = build_gateway(config, home)
        runner = aiohttp.web.AppRunner(create_app(gw), access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        actual = sockets[0].getsockname()[1] if sockets else port
        url = f"http://127.0.0.1:{actual}"
        click.echo(f"dashboard: {url}/  (open it in a browser: live, read-only)")
        rng = random.Random(seed)
        tasks = [
            asyncio.create_task(
                agent(f"agent-{i + 1}", url, traffic, random.Random(rng.random()), stop)
            )
            for i in range(agents)
        ]
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
    help="Synthetic agents sending requests.",
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
    help="switching: keys run out and reset; failover: OpenAI → Anthropic → Gemini as quotas run dry.",
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
    click.echo(
        f"\ndemo ended: {sum(traffic.ok.values())} answered, {sum(traffic.failed.values())} refused, by key: {dict(traffic.ok)}"
    )
