"""Provider presets as data: protocol, base URL, environment names, models, free-tier limits.

Prices are not here: :mod:`quotaflow.config.prices` reads them from the maintained
``genai-prices`` table when first needed, and a config file overrides any of them per model
(``providers[].models[].input/output/cached``). Free-tier limits apply to keys on a free plan
(``plan: free``): seed 002's free-tier table (Cohere, AI21, Groq, HuggingFace, OpenAI,
Google) and seed 003's monthly budget for Anthropic; a provider without a known free tier
gets none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from quotaflow.types import Metric


@dataclass(frozen=True, slots=True)
class ModelPreset:
    name: str
    tier: str  # "cheap" | "capable"
    context_window: int
    max_output: int
    kind: str = "chat"  # "chat" | "embedding"


@dataclass(frozen=True, slots=True)
class LimitPreset:
    metric: Metric
    window: str
    amount: float


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    name: str
    protocol: str
    base_url: str
    env: tuple[str, ...]  # prefixes: <P>_API_KEY, <P>_API_KEY_2…, <P>_LIMIT, <P>_BASE_URL
    models: tuple[ModelPreset, ...]
    key_limits: tuple[LimitPreset, ...] = ()
    priority: int = 100
    headers: dict[str, str] = field(default_factory=dict)
    # Model names it serves beyond its catalog (fnmatch patterns): a request for a model
    # not in any catalog goes to the provider it obviously belongs to.
    patterns: tuple[str, ...] = ()


# Each provider's model names, from its models page; "*/*" is a router's vendor/model form.
MODEL_PATTERNS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "ft:gpt-*", "codex-*"),
    "anthropic": ("claude-*",),
    "gemini": ("gemini-*", "gemma-*", "learnlm-*"),
    "groq": ("llama-*", "llama3-*", "gemma2-*", "mixtral-*", "deepseek-r1-distill-*", "compound-*"),
    "cohere": ("command-*", "c4ai-*"),
    "ai21": ("jamba-*",),
    "kimi": ("kimi-*", "moonshot-*"),
    "deepseek": ("deepseek-*",),
    "mistral": (
        "mistral-*",
        "open-mistral-*",
        "open-mixtral-*",
        "codestral-*",
        "ministral-*",
        "pixtral-*",
        "magistral-*",
        "devstral-*",
    ),
    "openrouter": ("*/*",),
    "huggingface": ("*/*",),
}


def _m(name: str, tier: str, ctx: int, out: int) -> ModelPreset:
    return ModelPreset(name, tier, ctx, out)


def _e(name: str, ctx: int) -> ModelPreset:
    """An embedding model: reached through ``/v1/embeddings`` only, never by ``auto``."""
    return ModelPreset(name, "cheap", ctx, 1, kind="embedding")


PRESETS: dict[str, ProviderPreset] = {
    p.name: replace(p, patterns=MODEL_PATTERNS.get(p.name, ()))
    for p in (
        ProviderPreset(
            "cohere",
            "openai",
            "https://api.cohere.ai/compatibility/v1",
            ("COHERE",),
            (
                _m("command-r-08-2024", "cheap", 128_000, 4_000),
                _m("command-a-03-2025", "capable", 256_000, 8_000),
            ),
            (LimitPreset("tokens", "month", 5_000_000),),
            priority=1,
        ),
        ProviderPreset(
            "ai21",
            "openai",
            "https://api.ai21.com/studio/v1",
            ("AI21",),
            (
                _m("jamba-mini", "cheap", 256_000, 4_096),
                _m("jamba-large", "capable", 256_000, 4_096),
            ),
            (LimitPreset("tokens", "month", 300_000),),
            priority=2,
        ),
        ProviderPreset(
            "groq",
            "openai",
            "https://api.groq.com/openai/v1",
            ("GROQ",),
            (
                _m("llama-3.1-8b-instant", "cheap", 131_072, 8_192),
                _m("llama-3.3-70b-versatile", "capable", 131_072, 32_768),
            ),
            (LimitPreset("requests", "day", 14_400),),
            priority=3,
        ),
        ProviderPreset(
            "huggingface",
            "openai",
            "https://router.huggingface.co/v1",
            ("HUGGINGFACE", "HF"),
            (
                _m("meta-llama/Llama-3.1-8B-Instruct", "cheap", 131_072, 8_192),
                _m("meta-llama/Llama-3.3-70B-Instruct", "capable", 131_072, 8_192),
            ),
            (LimitPreset("tokens", "month", 30_000),),
            priority=4,
        ),
        ProviderPreset(
            "openai",
            "openai",
            "https://api.openai.com/v1",
            ("OPENAI",),
            (
                _m("gpt-4o-mini", "cheap", 128_000, 16_384),
                _m("gpt-4.1-mini", "cheap", 1_047_576, 32_768),
                _m("gpt-4o", "capable", 128_000, 16_384),
                _m("gpt-4.1", "capable", 1_047_576, 32_768),
                _e("text-embedding-3-small", 8_191),
                _e("text-embedding-3-large", 8_191),
            ),
            (LimitPreset("tokens", "once", 5_000),),
            priority=5,
        ),
        ProviderPreset(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta",
            ("GEMINI", "GOOGLE"),
            (
                _m("gemini-2.0-flash", "cheap", 1_048_576, 8_192),
                _m("gemini-2.5-flash", "cheap", 1_048_576, 65_536),
                _m("gemini-2.5-pro", "capable", 1_048_576, 65_536),
                _e("gemini-embedding-001", 2_048),
            ),
            (LimitPreset("requests", "month", 5_000),),
            priority=6,
        ),
        ProviderPreset(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            ("ANTHROPIC",),
            (
                _m("claude-haiku-4-5", "cheap", 200_000, 64_000),
                _m("claude-sonnet-4-5", "capable", 200_000, 64_000),
                _m("claude-opus-4-5", "capable", 200_000, 64_000),
            ),
            (LimitPreset("tokens", "month", 140_000),),
            priority=7,
        ),
        ProviderPreset(
            "kimi",
            "openai",
            "https://api.moonshot.ai/v1",
            ("KIMI", "MOONSHOT"),
            (_m("kimi-k2.5", "cheap", 262_144, 32_768), _m("kimi-k1.5", "cheap", 131_072, 8_192)),
            (LimitPreset("tokens", "minute", 60_000),),
            priority=8,
        ),
        ProviderPreset(
            "openrouter",
            "openai",
            "https://openrouter.ai/api/v1",
            ("OPENROUTER",),
            (
                _m("openai/gpt-4o-mini", "cheap", 128_000, 16_384),
                _m("meta-llama/llama-3.3-70b-instruct", "cheap", 131_072, 16_384),
                _m("anthropic/claude-sonnet-4.5", "capable", 200_000, 64_000),
            ),
            priority=9,
        ),
        ProviderPreset(
            "deepseek",
            "openai",
            "https://api.deepseek.com/v1",
            ("DEEPSEEK",),
            (
                _m("deepseek-chat", "cheap", 128_000, 8_192),
                _m("deepseek-reasoner", "capable", 128_000, 65_536),
            ),
            priority=10,
        ),
        ProviderPreset(
            "mistral",
            "openai",
            "https://api.mistral.ai/v1",
            ("MISTRAL",),
            (
                _m("mistral-small-latest", "cheap", 128_000, 8_192),
                _m("mistral-large-latest", "capable", 128_000, 8_192),
                _e("mistral-embed", 8_192),
            ),
            priority=11,
        ),
    )
}
