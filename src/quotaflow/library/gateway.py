"""The engine in-process: :class:`Gateway` (sync, with ``a*`` async twins) and :class:`AsyncGateway`.

No server is needed; both run the same engine as ``quotaflow serve`` on the same data folder::

    from quotaflow import Gateway

    with Gateway() as gw:                       # ./quotaflow.yaml, else keys from the environment
        result = gw.make_llm_request(prompt="Explain Bitcoin in one sentence.", max_tokens=50)
        print(result["provider"], result["response"]["text"], result["tokens_used"])

        reply = gw.chat([{"role": "user", "content": "hi"}], model="auto")   # OpenAI shape
        text, info = gw.call_ai("Review this code", ai_name="guardian")      # seed 003
        if result["success"]:  # seed 004: how well the model that answered did, from 0 to 1
            gw.update_quality_score(result["provider"], result["model"], True, 0.95)
        print(gw.session_summary())

:class:`Gateway` runs the engine on a private event-loop thread, so its methods work from
plain code and (as ``achat``, ``amake_llm_request``, ``acall_ai``) from any event loop.
:class:`AsyncGateway` runs on the caller's loop and is cheaper when everything is async.

Provider and quota failures never raise from :meth:`make_llm_request` (seed 002 reports them
as ``success: False``); :meth:`chat` and :meth:`call_ai` raise the
:class:`~quotaflow.errors.QuotaflowError` that says why (seed 003: "both providers exhausted").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from quotaflow.clock import Clock, SystemClock
from quotaflow.config.load import load_config
from quotaflow.config.model import Config
from quotaflow.errors import BadRequest, QuotaflowError
from quotaflow.gateway import CallContext, ChatOutcome
from quotaflow.gateway import Gateway as Engine
from quotaflow.runtime import ConfigSource, Runtime, data_home, open_runtime, resolve_config

T = TypeVar("T")


def _warm_prices(engine: Engine) -> None:
    """Read the catalog's prices in a background thread (the price table is imported there,
    not by the first request); a model with no known price is warned about once."""
    from quotaflow.config.prices import stand_in_note, warm_in_background

    policy = engine.config.settings.unpriced

    def warn(unpriced: list[tuple[str, str, Any]]) -> None:
        for provider, model, price in unpriced:
            engine.observer.unpriced(provider, model, stand_in_note(price, policy))

    warm_in_background(list(engine.config.providers.values()), warn)


class AsyncGateway:
    """The engine on the caller's event loop. ``async with AsyncGateway() as gw: ...``."""

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        home: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = resolve_config(config)
        self.home = data_home(home)
        self._clock = clock or SystemClock()
        self._stack: contextlib.AsyncExitStack | None = None
        self._runtime: Runtime | None = None

    @classmethod
    def from_env(cls, *, home: str | os.PathLike[str] | None = None) -> AsyncGateway:
        """Keys, limits and overrides from the environment only (seed 001/002 style)."""
        return cls(load_config(None), home=home)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Open the data folder (settling rows a crash left pending) and get ready."""
        if self._runtime is not None:
            return
        stack = contextlib.AsyncExitStack()
        self._runtime = await stack.enter_async_context(
            open_runtime(self.config, self.home, clock=self._clock, settle=True)
        )
        self._stack = stack
        _warm_prices(self._runtime.gateway)

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._runtime = None

    async def __aenter__(self) -> AsyncGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def engine(self) -> Engine:
        """The running engine (:class:`quotaflow.gateway.Gateway`)."""
        if self._runtime is None:
            raise RuntimeError("the gateway is not started: use 'async with' or await start()")
        return self._runtime.gateway

    # -- OpenAI shape ----------------------------------------------------------------------
    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str = "auto",
        agent: str = "default",
        **params: Any,
    ) -> dict[str, Any]:
        """A chat completion in OpenAI's shape, routed across keys with fallback.

        ``params`` are OpenAI's (``max_tokens``, ``temperature``, …) plus quotaflow's
        ``complexity`` and ``preferred_provider``. The answer carries a ``quotaflow`` entry:
        provider, key label, model, attempts, request id, cost.
        """
        if params.get("stream"):
            raise BadRequest(
                "the library answers whole completions; use the /v1 server to stream",
                param="stream",
            )
        outcome = await self._chat(
            {"model": model, "messages": messages, **params}, CallContext(agent=agent)
        )
        body = dict(outcome.body)
        body["quotaflow"] = routing_info(outcome)
        return body

    async def _chat(self, body: dict[str, Any], ctx: CallContext) -> ChatOutcome:
        """One routed call; the engine books its statistics and the session totals."""
        return await self.engine.chat(body, ctx)

    # -- seed 002 ------------------------------------------------------------------------
    async def make_llm_request(
        self,
        prompt: str,
        max_tokens: int = 1000,
        temperature: float = 0.7,
        preferred_provider: str | None = None,
        *,
        model: str = "auto",
        agent: str = "default",
        system: str | None = None,
    ) -> dict[str, Any]:
        """Seed 002's request: ``{"success", "provider", "response": {"text", …}, "tokens_used", …}``.

        A provider or quota failure comes back as ``success: False`` with ``error``; only
        invalid arguments raise :class:`~quotaflow.errors.BadRequest`.
        """
        body = _prompt_body(prompt, model, system, max_tokens=max_tokens, temperature=temperature)
        if preferred_provider:
            body["preferred_provider"] = preferred_provider
        try:
            outcome = await self._chat(body, CallContext(agent=agent))
        except BadRequest:
            raise
        except QuotaflowError as exc:
            return {
                "success": False,
                "provider": None,
                "model": None,
                "response": {"text": ""},
                "tokens_used": 0,
                "error": exc.message,
                "error_type": exc.type,
                "attempts": exc.details.get("attempts", []),
            }
        info = routing_info(outcome)
        return {
            "success": True,
            "provider": outcome.provider,
            "model": outcome.model,
            "key": outcome.key.label,
            "response": {
                "text": answer_text(outcome.body),
                "finish_reason": _finish(outcome.body),
                "raw": outcome.body,
            },
            "tokens_used": outcome.usage.total_tokens,
            "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens,
            "cost_usd": outcome.cost_usd,
            "attempts": info["attempts"],
            "request_id": outcome.request_id,
        }

    async def reset_provider_usage(self, provider: str) -> list[str]:
        """Seed 002's ``reset_provider_usage``: usage before now no longer counts; returns key ids."""
        if provider not in self.engine.config.providers:
            raise BadRequest(f"unknown provider {provider!r}", param="provider")
        return [k.id for k in await self.engine.reset_provider(provider)]

    # -- seed 003 ------------------------------------------------------------------------
    async def call_ai(
        self,
        prompt: str,
        ai_name: str = "default",
        *,
        preferred_provider: str | None = None,
        max_tokens: int | None = None,
        model: str = "auto",
    ) -> tuple[str, dict[str, Any]]:
        """Seed 003's call: ``(response_text, provider_info)`` with ``provider`` and ``reason``.

        An agent declared in the config (``agents:``) gets its budgets and its provider
        order (primary while under its threshold, then the fallback); raises when no
        provider can answer.
        """
        from quotaflow.services.agents import context_for

        body = _prompt_body(prompt, model, None, max_tokens=max_tokens)
        agent = self._runtime.agents.get(ai_name) if self._runtime is not None else None
        ctx, pick = await context_for(self.engine, agent, ai_name)
        reason = pick.reason if pick is not None else "optimal_selection"
        if preferred_provider:
            body["preferred_provider"] = preferred_provider
            reason = "preferred_provider"
        outcome = await self._chat(body, ctx)
        if len(outcome.attempts) > 1:
            failed = outcome.attempts[-2]
            reason = f"fallback_after_error: {failed.provider} {failed.error_kind}"
        info = routing_info(outcome)
        info.update(reason=reason, ai_name=ai_name, tokens_used=outcome.usage.total_tokens)
        return answer_text(outcome.body), info

    # -- seed 004 ------------------------------------------------------------------------
    async def call_with_fallback(
        self, context: str | list[dict[str, Any]], **params: Any
    ) -> dict[str, Any]:
        """Seed 004's ``callWithFallback``: the best key × model first, up to 5 attempts."""
        messages = [{"role": "user", "content": context}] if isinstance(context, str) else context
        return await self.chat(messages, **params)

    def update_quality_score(
        self, provider: str, model: str, success: bool | int, score: float
    ) -> None:
        """Seed 004's ``updateQualityScore(provider, model, success, score)``."""
        self.engine.record_quality(provider, model, bool(success), float(score))

    def session_summary(self) -> dict[str, Any]:
        """Seed 004's ``getSessionSummary()``: requests, successes, failures, totalTokens, successRate."""
        return self.engine.session_summary()

    def api_stats(self) -> dict[str, Any]:
        """Seed 004's ``apiStats.json`` structure, by ``<provider>_<key id>``."""
        return api_stats(self.engine)


def api_stats(engine: Engine) -> dict[str, Any]:
    """Seed 004's ``apiStats``: ``{"lastUpdated", "providers": {id: {provider, keyIndex, models}}}``."""
    providers: dict[str, Any] = {}
    index = {
        k.id: i + 1 for p in engine.config.providers for i, k in enumerate(engine.provider_keys(p))
    }
    for (key_id, model), s in sorted(engine.key_model_stats().items()):
        entry = providers.setdefault(
            key_id, {"provider": s.provider, "keyIndex": index.get(key_id), "models": {}}
        )
        entry["models"][model] = s.to_seed004()
    return {"lastUpdated": engine.clock.now(), "providers": providers}


def _prompt_body(
    prompt: str,
    model: str,
    system: str | None,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("prompt must be a non-empty string", param="prompt")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    return body


def answer_text(body: Mapping[str, Any]) -> str:
    """The first choice's text of an OpenAI ``chat.completion`` body ("" when none)."""
    choices = body.get("choices") or []
    if not choices:
        return ""
    content = (choices[0].get("message") or {}).get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _finish(body: Mapping[str, Any]) -> str | None:
    choices = body.get("choices") or []
    return choices[0].get("finish_reason") if choices else None


def routing_info(outcome: ChatOutcome) -> dict[str, Any]:
    """Where a call went and how: the library's ``quotaflow`` entry."""
    return {
        "provider": outcome.provider,
        "key": outcome.key.label,
        "model": outcome.model,
        "route": outcome.route,
        "request_id": outcome.request_id,
        "attempts": len(outcome.attempts),
        "cost_usd": outcome.cost_usd,
        "fallback": len(outcome.attempts) > 1,
    }


class _LoopThread:
    """A private event loop on a daemon thread; coroutines are submitted to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="quotaflow-gateway", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if _running_loop() is self.loop:
            coro.close()
            raise RuntimeError("a blocking Gateway method was called from its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Gateway:
    """The engine in-process with a blocking API (and ``a*`` awaitable twins).

    ``Gateway()`` reads ``$QUOTAFLOW_CONFIG``, else ``./quotaflow.yaml``, else the
    environment's ``<PROVIDER>_API_KEY`` variables; ``config=`` takes a path, a mapping
    shaped like the YAML, or a :class:`~quotaflow.config.model.Config`. Data (the ledger)
    goes to ``home``, else ``$QUOTAFLOW_HOME``, else ``./.quotaflow``. Use it as a context
    manager or call :meth:`close`.
    """

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        home: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._async = AsyncGateway(config, home=home, clock=clock)
        self._loop = _LoopThread()
        try:
            self._loop.run(self._async.start())
        except BaseException:
            self._loop.stop()
            raise
        self._closed = False

    @classmethod
    def from_env(cls, *, home: str | os.PathLike[str] | None = None) -> Gateway:
        """Keys, limits and overrides from the environment only."""
        return cls(load_config(None), home=home)

    @property
    def config(self) -> Config:
        return self._async.config

    @property
    def engine(self) -> Engine:
        """The running engine; call its coroutines through :meth:`run`."""
        return self._async.engine

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the engine on the gateway's loop and return its result."""
        return self._loop.run(coro)

    def close(self) -> None:
        """Flush the ledger and stop the private loop (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._async.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()

    # -- blocking API --------------------------------------------------------------------
    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str = "auto",
        agent: str = "default",
        **params: Any,
    ) -> dict[str, Any]:
        """See :meth:`AsyncGateway.chat`."""
        return self._loop.run(self._async.chat(messages, model=model, agent=agent, **params))

    def make_llm_request(
        self,
        prompt: str,
        max_tokens: int = 1000,
        temperature: float = 0.7,
        preferred_provider: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """See :meth:`AsyncGateway.make_llm_request` (seed 002)."""
        return self._loop.run(
            self._async.make_llm_request(prompt, max_tokens, temperature, preferred_provider, **kw)
        )

    def call_ai(
        self, prompt: str, ai_name: str = "default", **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        """See :meth:`AsyncGateway.call_ai` (seed 003)."""
        return self._loop.run(self._async.call_ai(prompt, ai_name, **kw))

    def call_with_fallback(
        self, context: str | list[dict[str, Any]], **params: Any
    ) -> dict[str, Any]:
        """See :meth:`AsyncGateway.call_with_fallback` (seed 004)."""
        return self._loop.run(self._async.call_with_fallback(context, **params))

    def reset_provider_usage(self, provider: str) -> list[str]:
        """See :meth:`AsyncGateway.reset_provider_usage` (seed 002)."""
        return self._loop.run(self._async.reset_provider_usage(provider))

    def update_quality_score(
        self, provider: str, model: str, success: bool | int, score: float
    ) -> None:
        """Seed 004's ``updateQualityScore``; changes the key × model's quality record."""
        self._loop.run(_call(self._async.update_quality_score, provider, model, success, score))

    def session_summary(self) -> dict[str, Any]:
        """Seed 004's ``getSessionSummary()``."""
        return self._async.session_summary()

    def api_stats(self) -> dict[str, Any]:
        """Seed 004's ``apiStats`` structure."""
        return self._loop.run(_call(self._async.api_stats))

    # -- awaitable twins (usable from any event loop) ------------------------------------
    async def achat(self, messages: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        return await self._loop.run_async(self._async.chat(messages, **kw))

    async def amake_llm_request(self, prompt: str, **kw: Any) -> dict[str, Any]:
        return await self._loop.run_async(self._async.make_llm_request(prompt, **kw))

    async def acall_ai(
        self, prompt: str, ai_name: str = "default", **kw: Any
    ) -> tuple[str, dict[str, Any]]:
        return await self._loop.run_async(self._async.call_ai(prompt, ai_name, **kw))


async def _call(fn: Any, *args: Any) -> Any:
    """Run a plain function on the gateway's loop (the engine's state lives there)."""
    return fn(*args)


class UnifiedAIService:
    """Seed 003's ``unified_ai_service``: ``await service.call_ai(prompt=..., ai_name=...)``.

    The gateway behind it is made on first use (config as :class:`Gateway` finds it) and
    runs on its own thread, so it works from any event loop.
    """

    def __init__(self) -> None:
        self._gateway: Gateway | None = None
        self._lock = threading.Lock()

    @property
    def gateway(self) -> Gateway:
        with self._lock:
            if self._gateway is None:
                self._gateway = Gateway()
            return self._gateway

    async def call_ai(
        self, prompt: str, ai_name: str = "default", preferred_provider: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        return await self.gateway.acall_ai(prompt, ai_name, preferred_provider=preferred_provider)

    def close(self) -> None:
        with self._lock:
            if self._gateway is not None:
                self._gateway.close()
            self._gateway = None


unified_ai_service = UnifiedAIService()
