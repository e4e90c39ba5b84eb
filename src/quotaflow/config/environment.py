"""The environment the configuration reads: the process's, over a ``.env`` file.

A ``.env`` in the working folder is read with python-dotenv (the format seeds 002 and 003
use); a variable set in the real environment wins over the file. Names that look like a
provider key under a name quotaflow does not read (``OPENAI_APIKEY``, ``CLAUDE_API_KEY``,
``OPENAI_API_KEY_1``) get a hint naming the variable they probably meant.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from quotaflow.config.presets import PRESETS, ProviderPreset
from quotaflow.engine.catalog import Provider
from quotaflow.errors import ConfigError

if TYPE_CHECKING:
    from quotaflow.config.schema import SettingsSpec

DOTENV = ".env"

# Other names people give a provider (the prefix of their variable) → its preset's prefix.
_ALIASES = {
    "CLAUDE": "ANTHROPIC",
    "GPT": "OPENAI",
    "CHATGPT": "OPENAI",
    "GOOGLE_AI": "GEMINI",
    "GOOGLE_GEMINI": "GEMINI",
    "MOONSHOTAI": "KIMI",
    "HUGGING_FACE": "HUGGINGFACE",
    "HUGGINGFACEHUB": "HUGGINGFACE",
    "MISTRALAI": "MISTRAL",
    "CO": "COHERE",
}
_KEYISH = re.compile(
    r"^(?P<prefix>[A-Z][A-Z0-9_]*?)_(?P<suffix>API_?KEY(?:_?\d+)?|KEY|TOKEN|API_TOKEN|SECRET_KEY|SECRET)$"
)


def process_environment(folder: Path | None = None) -> dict[str, str]:
    """``os.environ`` over the ``.env`` of ``folder`` (default: the working folder)."""
    path = (folder or Path.cwd()) / DOTENV
    env: dict[str, str] = {}
    if path.is_file():
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    env.update(os.environ)
    return env


def key_variables(preset: ProviderPreset) -> list[tuple[str, str]]:
    """Each variable a key of ``preset`` is read from, with the id its key gets: the id
    follows the variable, so removing one never moves another secret onto a freed id (and
    the usage the ledger keeps under it). ``<P>_API_KEY`` → ``<name>-1``, ``<P>_API_KEY_4``
    → ``<name>-4``; a second prefix (``GOOGLE`` of gemini) → ``<name>-google-1``, …"""
    out: list[tuple[str, str]] = []
    for i, prefix in enumerate(preset.env):
        stem = preset.name if i == 0 else f"{preset.name}-{prefix.lower()}"
        out.append((f"{prefix}_API_KEY", f"{stem}-1"))
        if prefix == "HF":
            out.append(("HF_KEY", f"{stem}-key"))
        out += [(f"{prefix}_API_KEY_{n}", f"{stem}-{n}") for n in range(2, 33)]
    return out


def _read_names() -> set[str]:
    return {name for preset in PRESETS.values() for name, _ in key_variables(preset)}


def key_hints(env: Mapping[str, str]) -> list[str]:
    """A hint for each variable that looks like a provider key under a name not read."""
    read = _read_names()
    prefixes = {p: p for preset in PRESETS.values() for p in preset.env} | _ALIASES
    hints = []
    for name in sorted(env):
        if name in read or not env[name]:
            continue
        m = _KEYISH.match(name)
        if m is None:
            continue
        prefix = prefixes.get(m.group("prefix"))
        if prefix is None:
            continue
        canonical = _ALIASES.get(prefix, prefix)
        meant = f"{canonical}_API_KEY"
        if re.fullmatch(r"API_?KEY_?1", m.group("suffix")):
            why = f"the first key is {meant}, the next ones {meant}_2, {meant}_3, …"
        else:
            why = f"did you mean {meant}?"
        hints.append(f"{name} looks like a key but is not read: {why}")
    return hints


STRATEGY_ENV = "QUOTAFLOW_STRATEGY"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_strategy(env: Mapping[str, str]) -> str | None:
    """``QUOTAFLOW_STRATEGY``, checked against the strategies there are (None when unset)."""
    value = env.get(STRATEGY_ENV, "").strip().lower()
    if not value:
        return None
    from typing import get_args

    from quotaflow.config.schema import StrategyName

    names = get_args(StrategyName)
    if value not in names:
        raise ConfigError(f"{STRATEGY_ENV}: {value!r}: use one of {', '.join(names)}")
    return value


def _number(env: Mapping[str, str], name: str, lo: float, hi: float) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: {text} must be between {lo:g} and {hi:g}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    text = env.get(name, "").strip().lower()
    if not text:
        return None
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ConfigError(f"{name}: {text!r}: use true or false")


def seed003_providers(
    providers: dict[str, Provider], env: Mapping[str, str]
) -> dict[str, Provider]:
    """Seed 003's OpenAI variables on the openai provider: ``OPENAI_MODEL`` (the model its
    calls use when the request does not name one of its models), ``OPENAI_MAX_TOKENS`` and
    ``OPENAI_TEMPERATURE`` (a request's defaults there), ``ENABLE_OPENAI_FALLBACK=false``
    (``auto`` never falls back to OpenAI)."""
    openai = providers.get("openai")
    if openai is None:
        return providers
    defaults: dict[str, float] = {}
    max_tokens = _number(env, "OPENAI_MAX_TOKENS", 1, 10_000_000)
    if max_tokens is not None:
        defaults["max_tokens"] = int(max_tokens)
    temperature = _number(env, "OPENAI_TEMPERATURE", 0, 2)
    if temperature is not None:
        defaults["temperature"] = temperature
    model = env.get("OPENAI_MODEL", "").strip() or None
    models = openai.models
    if model is not None and model not in models:
        models = {model: openai.model(model), **models}
    fallback = _flag(env, "ENABLE_OPENAI_FALLBACK")
    in_auto = not (fallback is False and "anthropic" in providers)
    changed = replace(
        openai, models=models, default_model=model, request_defaults=defaults, in_auto=in_auto
    )
    return {**providers, "openai": changed}


def seed003_settings(
    settings: SettingsSpec, env: Mapping[str, str], providers: Mapping[str, Provider]
) -> SettingsSpec:
    """``ENABLE_OPENAI_FALLBACK=true``: callers without an agent order of their own use
    Anthropic first and OpenAI once Anthropic is ``OPENAI_FALLBACK_THRESHOLD`` used (0.95)."""
    threshold = _number(env, "OPENAI_FALLBACK_THRESHOLD", 0.01, 1)
    if not _flag(env, "ENABLE_OPENAI_FALLBACK") or not {"anthropic", "openai"} <= set(providers):
        return settings
    update: dict[str, object] = {"provider_order": ["anthropic", "openai"]}
    if threshold is not None:
        update["switch_threshold"] = threshold
    return settings.model_copy(update=update)
