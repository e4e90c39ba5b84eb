"""Loading the configuration: a YAML file with ``${ENV}`` references, or the environment alone.

Without a file, keys are discovered from ``<PROVIDER>_API_KEY`` (and ``_API_KEY_2``, …)
for every preset, each under the id of its variable (``OPENAI_API_KEY_4`` → ``openai-4``),
with the preset's free-tier limits, seed 002's ``<PROVIDER>_LIMIT`` and seed 003's
``<PROVIDER>_MONTHLY_LIMIT`` / ``<PROVIDER>_BASE_URL`` overrides. Errors name the field
and the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from quotaflow.config.environment import (
    env_strategy,
    key_hints,
    key_variables,
    process_environment,
    seed003_providers,
    seed003_settings,
)
from quotaflow.config.model import Config
from quotaflow.config.presets import PRESETS, LimitPreset, ProviderPreset
from quotaflow.config.prices import Override, known_among, model_price, priced_model
from quotaflow.config.urls import check_base_url
from quotaflow.engine.catalog import Deployment, Key, ModelInfo, Provider, Route
from quotaflow.engine.limits import Limit
from quotaflow.engine.pricing import PriceLike
from quotaflow.engine.strategies.base import LearnedWeights, StrategySettings
from quotaflow.engine.windows import parse_window
from quotaflow.errors import ConfigError

if TYPE_CHECKING:  # pydantic and yaml are imported when a configuration is loaded
    from pydantic import ValidationError

    from quotaflow.config.schema import (
        ConfigSpec,
        LimitSpec,
        ModelSpec,
        NotifySpec,
        Plan,
        ProviderSpec,
        SettingsSpec,
    )

# Where a limit came from, as start-up, status and the API say it.
CONFIGURED = "config"
FREE_PLAN = "free-plan preset"
ENV_OVERRIDE = "env override"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, env: Mapping[str, str], path: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if default is not None:  # shell semantics: ${X:-d} is d when X is unset or empty
                return env.get(name) or default
            if name in env:
                return env[name]
            raise ConfigError(f"{path}: environment variable {name} is not set")

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, env, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


def _format_validation(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        # Whole-config checks have no location; their messages name the field themselves.
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "invalid configuration:\n  " + "\n  ".join(lines)


def parse_spec(data: Any, env: Mapping[str, str] | None = None) -> ConfigSpec:
    env = os.environ if env is None else env
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("invalid configuration: the top level must be a mapping")
    data = _expand(data, env, "")
    from pydantic import ValidationError

    from quotaflow.config.schema import ConfigSpec

    try:
        return ConfigSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc)) from None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The configuration from ``path``, or from the environment when ``path`` is None.

    ``env`` defaults to the process environment over the working folder's ``.env``."""
    env = process_environment() if env is None else env
    if path is None:
        return resolve(discover_spec(env), env, source="environment")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    import yaml  # only when a file is read

    try:
        # libyaml's parser when PyYAML has it (the pure-Python one takes ~0.1 s of a
        # command's start on a config of a few dozen keys); the same constructor, so the
        # same data
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        try:  # the pure-Python parser's message shows the offending line
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        raise
    return resolve(parse_spec(data, env), env, source=str(p))


def _env_keys(preset: ProviderPreset, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(id, secret)`` of each key of ``preset`` in the environment; a secret set in two
    variables is one key, under the id of the first."""
    keys: dict[str, str] = {}
    for name, key_id in key_variables(preset):
        secret = env.get(name)
        if secret and secret not in keys:
            keys[secret] = key_id
    return [(key_id, secret) for secret, key_id in keys.items()]


def _env_value(preset: ProviderPreset, env: Mapping[str, str], suffix: str) -> str | None:
    for prefix in preset.env:
        v = env.get(f"{prefix}_{suffix}")
        if v:
            return v
    return None


def _env_base_url(preset: ProviderPreset, env: Mapping[str, str]) -> str | None:
    """``<PROVIDER>_BASE_URL``, checked like the YAML field, the error naming the variable."""
    for prefix in preset.env:
        v = env.get(f"{prefix}_BASE_URL")
        if v:
            try:
                return check_base_url(v)
            except ValueError as exc:
                raise ConfigError(f"{prefix}_BASE_URL: {v!r}: {exc}") from None
    return None


def env_plan(preset: ProviderPreset, env: Mapping[str, str]) -> Plan | None:
    """``<PROVIDER>_PLAN`` (``free`` or ``paid``), or None when unset."""
    for prefix in preset.env:
        v = env.get(f"{prefix}_PLAN")
        if v:
            plan = v.strip().lower()
            if plan not in ("free", "paid"):
                raise ConfigError(f"{prefix}_PLAN: {v!r}: use 'free' or 'paid'")
            return "free" if plan == "free" else "paid"
    return None


def _env_limits(preset: ProviderPreset, env: Mapping[str, str]) -> list[LimitSpec] | None:
    """Seed 002's ``<PROVIDER>_LIMIT`` and seed 003's ``<PROVIDER>_MONTHLY_LIMIT``, or None
    when neither is set. ``_LIMIT`` takes the shape (metric, window) of the preset's first
    free-tier limit and keeps its others on a free plan."""
    from quotaflow.config.schema import SourcedLimitSpec

    amount = _env_value(preset, env, "LIMIT")
    monthly = _env_value(preset, env, "MONTHLY_LIMIT")
    if amount is None and monthly is None:
        return None
    free = env_plan(preset, env) == "free"
    limits = [
        SourcedLimitSpec(metric=lp.metric, window=lp.window, amount=lp.amount, source=FREE_PLAN)
        for lp in (preset.key_limits if free else ())
    ]
    if amount is not None:
        value = _number(amount, f"{preset.env[0]}_LIMIT")
        base = preset.key_limits[0] if preset.key_limits else LimitPreset("tokens", "month", 0)
        env_limit = SourcedLimitSpec(
            metric=base.metric, window=base.window, amount=value, source=ENV_OVERRIDE
        )
        limits = [env_limit, *limits[1:]]
    if monthly is not None:
        value = _number(monthly, f"{preset.env[0]}_MONTHLY_LIMIT")
        limits = [lim for lim in limits if not (lim.metric == "tokens" and lim.window == "month")]
        limits.append(
            SourcedLimitSpec(metric="tokens", window="month", amount=value, source=ENV_OVERRIDE)
        )
    return list(limits)


def _number(text: str, name: str) -> float:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name}: must not be negative")
    return value


def discover_spec(env: Mapping[str, str]) -> ConfigSpec:
    """A spec with one provider per preset that has a key in the environment."""
    from quotaflow.config.schema import ConfigSpec, KeySpec, ProviderSpec

    providers = []
    for preset in PRESETS.values():
        found = _env_keys(preset, env)
        if not found:
            continue
        keys = [KeySpec(id=key_id, secret=secret) for key_id, secret in found]
        providers.append(
            ProviderSpec(
                name=preset.name,
                base_url=_env_base_url(preset, env),
                keys=keys,
                key_limits=_env_limits(preset, env),
                plan=env_plan(preset, env),
            )
        )
    return ConfigSpec(providers=providers)


def _limits(specs: list[LimitSpec], scope: str) -> tuple[Limit, ...]:
    from quotaflow.config.schema import SourcedLimitSpec

    out: dict[str, Limit] = {}
    for s in specs:
        source = s.source if isinstance(s, SourcedLimitSpec) else CONFIGURED
        lim = Limit.make(scope, s.metric, parse_window(s.window), s.amount, source)
        out[lim.id] = lim  # a later limit of the same metric and window replaces an earlier one
    return tuple(out.values())


PriceOf = Callable[[str, Override], PriceLike]


def _model_info(
    spec: ModelSpec | str, preset_models: dict[str, ModelInfo], price: PriceOf
) -> ModelInfo:
    if isinstance(spec, str):
        return preset_models.get(spec) or ModelInfo(
            spec, None, 128_000, 4_096, price(spec, (None, None, None))
        )
    base = preset_models.get(spec.name)
    return ModelInfo(
        spec.name,
        spec.tier or (base.tier if base else None),
        spec.context_window
        if base is None or "context_window" in spec.model_fields_set
        else base.context_window,
        spec.max_output
        if base is None or "max_output" in spec.model_fields_set
        else base.max_output,
        price(spec.name, (spec.input, spec.output, spec.cached)),
        spec.kind or (base.kind if base else "chat"),
    )


def _provider(
    i: int, spec: ProviderSpec, env: Mapping[str, str], settings: SettingsSpec
) -> tuple[Provider, list[Key]]:
    preset_name = spec.preset or (spec.name if spec.name in PRESETS else None)
    if preset_name is not None and preset_name not in PRESETS:
        raise ConfigError(
            f"providers.{i}.preset: unknown preset {preset_name!r} (known: {', '.join(PRESETS)})"
        )
    preset = PRESETS.get(preset_name) if preset_name else None
    protocol = spec.protocol or (preset.protocol if preset else None)
    base_url = spec.base_url or (_env_base_url(preset, env) if preset else None)
    base_url = base_url or (preset.base_url if preset else None)
    if protocol is None:
        raise ConfigError(
            f"providers.{i}.protocol: required for a provider without a preset (openai, anthropic or gemini)"
        )
    if base_url is None:
        raise ConfigError(f"providers.{i}.base_url: required for a provider without a preset")
    # Prices: the configuration's own, else the price table's (read when first needed),
    # else settings.unpriced's stand-in among the provider's known prices.
    prices_as = preset_name or spec.name
    listed: dict[str, Override] = {
        m.name: (None, None, None) for m in (preset.models if preset else ())
    }
    for ms in spec.models or ():
        if isinstance(ms, str):
            listed.setdefault(ms, (None, None, None))
        else:
            listed[ms.name] = (ms.input, ms.output, ms.cached)

    def price(name: str, override: Override) -> PriceLike:
        return model_price(
            prices_as,
            name,
            base_url=base_url,
            policy=settings.unpriced,
            siblings=lambda: known_among(prices_as, base_url, listed),
            override=override,
        )

    preset_models = {
        m.name: ModelInfo(
            m.name,
            m.tier,
            m.context_window,
            m.max_output,
            price(m.name, (None, None, None)),
            m.kind,
        )
        for m in (preset.models if preset else ())
    }
    if spec.models is None:
        models = preset_models
    else:
        models = {}
        for m in spec.models:
            info = _model_info(m, preset_models, price)
            models[info.name] = info
    if not models:
        raise ConfigError(
            f"providers.{i}.models: a provider without a preset needs at least one model"
        )
    from quotaflow.config.schema import SourcedLimitSpec

    plan: Plan = spec.plan or (env_plan(preset, env) if preset else None) or "paid"
    free_tier = [
        SourcedLimitSpec(metric=lp.metric, window=lp.window, amount=lp.amount, source=FREE_PLAN)
        for lp in (preset.key_limits if preset else ())
    ]
    provider = Provider(
        name=spec.name,
        prices_as=prices_as,
        protocol=protocol,
        base_url=base_url.rstrip("/"),
        models=models,
        limits=_limits(spec.limits, f"provider:{spec.name}"),
        priority=spec.priority
        if spec.priority is not None
        else (preset.priority if preset else 100),
        headers=dict(spec.headers),
        timeout_s=spec.timeout_s,
        patterns=tuple(
            spec.model_patterns
            if spec.model_patterns is not None
            else (preset.patterns if preset else ())
        ),
        ttfb_timeout_s=spec.ttfb_timeout_s,
        stream_max_s=spec.stream_max_s,
    )
    keys = []
    for j, k in enumerate(spec.keys):
        kid = k.id or f"{spec.name}-{j + 1}"
        key_plan = k.plan or plan
        # Gateway-side caps only when asked: configured limits, else the free tier of a key
        # declared on a free plan; a paid key is limited by what its provider announces.
        specs = k.limits if k.limits is not None else spec.key_limits
        if specs is None:
            specs = list(free_tier) if key_plan == "free" else []
        limits = _limits(specs, f"key:{kid}")
        label = k.label or kid
        keys.append(
            Key(kid, spec.name, k.secret, label, k.priority, k.weight, k.enabled, limits, key_plan)
        )
    return provider, keys


def _implicit_routes(providers: dict[str, Provider]) -> dict[str, Route]:
    by_model: dict[str, list[Deployment]] = {}
    auto: list[Deployment] = []
    for p in providers.values():
        for m in p.models.values():
            by_model.setdefault(m.name, []).append(Deployment(p.name, m, m.tier, 1.0, p.priority))
        if not p.in_auto:
            continue
        # "auto": per provider, its first cheap and first capable model (or its first model),
        # or only the provider's default model when it has one.
        picked: dict[str | None, ModelInfo] = {}
        for m in p.models.values():
            if m.kind == "chat":  # an embedding model never answers a chat
                picked.setdefault(m.tier, m)
        if p.default_model is not None:
            picked = {None: p.model(p.default_model)}
        for m in picked.values():
            auto.append(Deployment(p.name, m, m.tier, 1.0, p.priority))
    routes = {
        name: Route(name, tuple(_ordered(ds)), implicit=True) for name, ds in by_model.items()
    }
    if auto:
        routes["auto"] = Route("auto", tuple(_ordered(auto)), implicit=True)
    return routes


def _ordered(ds: list[Deployment]) -> list[Deployment]:
    return [
        Deployment(d.provider, d.model, d.tier, d.weight, d.priority, n) for n, d in enumerate(ds)
    ]


def resolve(spec: ConfigSpec, env: Mapping[str, str] | None = None, source: str = "file") -> Config:
    """Turn a validated spec into the engine's frozen :class:`Config`."""
    env = os.environ if env is None else env
    providers: dict[str, Provider] = {}
    keys: list[Key] = []
    for i, ps in enumerate(spec.providers):
        provider, pkeys = _provider(i, ps, env, spec.settings)
        providers[provider.name] = provider
        keys.extend(pkeys)
    if source == "environment":
        providers = seed003_providers(providers, env)
    ids = [k.id for k in keys]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise ConfigError(f"providers.*.keys.*.id: duplicate key id(s) {sorted(dup)}")
    routes: dict[str, Route] = {}
    for i, rs in enumerate(spec.routes):
        deployments = []
        for j, d in enumerate(rs.deployments):
            p = providers[d.provider]
            info = priced_model(p, d.model, spec.settings.unpriced)
            deployments.append(
                Deployment(
                    d.provider,
                    info,
                    d.tier or info.tier,
                    d.weight,
                    d.priority if d.priority is not None else j,
                    j,
                )
            )
        if rs.name == "auto":
            raise ConfigError(
                f"routes.{i}.name: 'auto' is reserved (it routes across every provider)"
            )
        routes[rs.name] = Route(
            rs.name,
            tuple(deployments),
            _limits(rs.limits, f"route:{rs.name}"),
            rs.strategy,
            fallback_route=rs.fallback_route,
        )
    for name, route in _implicit_routes(providers).items():
        routes.setdefault(name, route)
    for i, rs in enumerate(spec.routes):
        fb = rs.fallback_route
        if fb is not None and (fb == rs.name or fb not in routes):
            why = "a route cannot fall back to itself" if fb == rs.name else "no such route"
            raise ConfigError(
                f"routes.{i}.fallback_route: {fb!r}: {why} (routes: {', '.join(routes)})"
            )
    settings = spec.settings
    if source == "environment":
        settings = seed003_settings(settings, env, providers)
    strategy = env_strategy(env)
    if strategy is not None:
        settings = settings.model_copy(update={"strategy": strategy})
    for pattern, target in spec.settings.model_aliases.items():
        if target not in routes:
            raise ConfigError(
                f"settings.model_aliases.{pattern}: {target!r} is neither a route nor a model "
                f"a provider serves (routes: {', '.join(routes)})"
            )
    return Config(
        server=spec.server,
        settings=settings,
        tz=ZoneInfo(spec.settings.timezone),
        providers=providers,
        keys=tuple(keys),
        routes=routes,
        global_limits=_limits(spec.limits, "global"),
        source=source,
        agents=tuple(spec.agents),
        storage=spec.storage,
        strategy=strategy_settings(settings),
        notify=notify_targets(spec, env),
        notes=tuple(key_hints(env)) if source == "environment" else (),
    )


def notify_targets(spec: ConfigSpec, env: Mapping[str, str]) -> tuple[NotifySpec, ...]:
    """The YAML's ``notify`` list, plus ``QUOTAFLOW_WEBHOOK_URL`` (JSON, every event) when it
    names a URL the list does not have already."""
    from quotaflow.config.schema import WEBHOOK_URL_ENV, NotifySpec

    targets = list(spec.notify)
    url = (env.get(WEBHOOK_URL_ENV) or "").strip()
    if url and all(t.url != url for t in targets):
        try:
            targets.append(NotifySpec(url=url))
        except ValueError as exc:
            raise ConfigError(f"{WEBHOOK_URL_ENV}: {exc}") from None
    return tuple(targets)


def strategy_settings(s: SettingsSpec) -> StrategySettings:
    """The engine's copy of the settings the strategies read."""
    w = s.learned_weights
    return StrategySettings(
        preferred_providers=tuple(s.preferred_providers),
        preferred_bonus=s.preferred_bonus,
        learned_weights=LearnedWeights(w.reliability, w.speed, w.quality, w.recency),
        learning_half_life_s=s.learning_half_life_s,
        learning_window=s.learning_window,
        learned_speed_reference_ms=s.learned_speed_reference_ms,
        learned_recency_tau_s=s.learned_recency_tau_s,
        bandit_exploration=s.bandit_exploration,
        bandit_confidence=s.bandit_confidence,
    )
