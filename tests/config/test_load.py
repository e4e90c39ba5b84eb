"""Loading the configuration: YAML with ${ENV}, field-named errors, environment discovery, routes."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from quotaflow.config.load import discover_spec, load_config, parse_spec, resolve
from quotaflow.config.model import Config
from quotaflow.engine.windows import Window
from quotaflow.errors import ConfigError

YAML = """
settings:
  timezone: Europe/Paris
  strategy: priority
providers:
  - name: openai
    base_url: ${OPENAI_URL:-https://api.openai.com/v1}
    keys:
      - id: main
        secret: ${OPENAI_KEY}
        limits:
          - {metric: tokens, window: day, amount: 200000}
          - {metric: requests, window: "rolling 60s", amount: 50}
      - secret: ${OPENAI_KEY_B}
        priority: 1
        weight: 2
  - name: local
    protocol: openai
    base_url: http://127.0.0.1:8000/v1/
    models:
      - {name: llama, tier: cheap, max_output: 2048, input: 0, output: 0}
    keys:
      - secret: none
    limits:
      - {metric: requests, window: minute, amount: 10}
routes:
  - name: smart
    strategy: cost
    deployments:
      - {provider: openai, model: gpt-4o-mini, tier: cheap}
      - {provider: local, model: llama, weight: 3}
    limits:
      - {metric: cost, window: month, amount: 25}
limits:
  - {metric: cost, window: month, amount: 100}
"""
ENV = {"OPENAI_KEY": "sk-main-123456789", "OPENAI_KEY_B": "sk-b-987654321"}


def load(tmp_path: Path, text: str, env: dict[str, str]) -> Config:
    p = tmp_path / "quotaflow.yaml"
    p.write_text(text, encoding="utf-8")
    return load_config(p, env)


def error_of(data: object, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(parse_spec(data, env or {}), env or {})
    return str(info.value)


# -- YAML and ${ENV} -------------------------------------------------------------------------------


def test_yaml_file_resolves_providers_keys_limits_and_routes(tmp_path: Path) -> None:
    cfg = load(tmp_path, YAML, ENV)
    assert cfg.source == str(tmp_path / "quotaflow.yaml")
    assert cfg.tz == ZoneInfo("Europe/Paris")
    assert cfg.settings.strategy == "priority"
    openai, local = cfg.providers["openai"], cfg.providers["local"]
    assert openai.base_url == "https://api.openai.com/v1"  # the ${…:-default}
    assert openai.protocol == "openai"
    assert "gpt-4o" in openai.models  # preset models
    assert local.base_url == "http://127.0.0.1:8000/v1"
    assert [lim.id for lim in local.limits] == ["provider:local/requests/minute"]
    main, second, loc = cfg.keys
    assert (main.id, main.secret, main.label) == ("main", "sk-main-123456789", "main")
    assert [(lim.id, lim.amount) for lim in main.limits] == [
        ("key:main/tokens/day", 200_000),
        ("key:main/requests/rolling 60s", 50),
    ]
    assert main.limits[1].window == Window("rolling", 60)
    assert (second.id, second.secret, second.priority, second.weight) == (
        "openai-2",
        "sk-b-987654321",
        1,
        2.0,
    )
    # A key without limits on the default (paid) plan has no gateway-side cap.
    assert (second.limits, second.plan) == ((), "paid")
    assert {lim.source for lim in main.limits} == {"config"}
    assert loc.id == "local-1"
    smart = cfg.routes["smart"]
    assert smart.strategy == "cost"
    assert not smart.implicit
    assert [
        (d.provider, d.model.name, d.tier, d.weight, d.priority, d.order) for d in smart.deployments
    ] == [
        ("openai", "gpt-4o-mini", "cheap", 1.0, 0, 0),
        ("local", "llama", "cheap", 3.0, 1, 1),
    ]
    assert smart.deployments[1].model.max_output == 2048
    assert [lim.id for lim in smart.limits] == ["route:smart/cost/month"]
    assert [lim.id for lim in cfg.global_limits] == ["global/cost/month"]


def test_env_reference_is_substituted_inside_strings_and_defaults_apply(tmp_path: Path) -> None:
    env = {**ENV, "OPENAI_URL": "http://127.0.0.1:9999/v1"}
    cfg = load(tmp_path, YAML, env)
    assert cfg.providers["openai"].base_url == "http://127.0.0.1:9999/v1"
    spec = parse_spec(
        {"providers": [{"name": "x", "protocol": "openai", "base_url": "http://${HOST:-h}:${PORT}/v1",
                        "models": ["m"], "keys": [{"secret": "a-${K}-b"}]}]},
        {"PORT": "81", "K": "mid"},
    )  # fmt: skip
    assert spec.providers[0].base_url == "http://h:81/v1"
    assert spec.providers[0].keys[0].secret == "a-mid-b"


def test_an_empty_env_variable_takes_the_default_like_a_shell() -> None:
    data = {"providers": [{"name": "openai", "keys": [{"secret": "${OPENAI_KEY:-sk-fallback}"}]}]}
    spec = parse_spec(data, {"OPENAI_KEY": ""})
    assert spec.providers[0].keys[0].secret == "sk-fallback"


def test_missing_env_variable_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, YAML, {"OPENAI_KEY": "sk-1"})
    assert (
        str(info.value) == "providers.0.keys.1.secret: environment variable OPENAI_KEY_B is not set"
    )


def test_unreadable_and_invalid_yaml_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", {})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(tmp_path, "providers: [\n", {})
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load(tmp_path, "- a\n- b\n", {})


def test_an_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, "", {})
    assert cfg.providers == {}
    assert cfg.routes == {}
    assert cfg.settings.strategy == "headroom"


# -- field-named errors -----------------------------------------------------------------------------


def test_unknown_window_names_the_field_path() -> None:
    msg = error_of(
        {"providers": [{"name": "openai", "keys": [
            {"secret": "sk", "limits": [{"metric": "tokens", "window": "fortnight", "amount": 5}]}
        ]}]}
    )  # fmt: skip
    assert msg.startswith("invalid configuration:\n  ")
    assert (
        "providers.0.keys.0.limits.0.window: unknown window 'fortnight': use minute, hour, day, "
        "month, once or 'rolling N s'" in msg
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {
                "providers": [
                    {"name": "openai", "keys": [{"secret": "s", "limits": [{"amount": -1}]}]}
                ]
            },
            "providers.0.keys.0.limits.0.amount: Input should be greater than or equal to 0",
        ),
        (
            {
                "providers": [
                    {
                        "name": "openai",
                        "keys": [{"secret": "s", "limits": [{"metric": "calls", "amount": 1}]}],
                    }
                ]
            },
            "providers.0.keys.0.limits.0.metric: Input should be 'tokens', 'requests' or 'cost'",
        ),
        (
            {"providers": [{"name": "openai", "kyes": []}]},
            "providers.0.kyes: Extra inputs are not permitted",
        ),
        (
            {"providers": [{"name": "x", "base_url": "ftp://h", "protocol": "openai"}]},
            "providers.0.base_url: base_url must start with http:// or https://",
        ),
        (
            {"settings": {"timezone": "Mars/Olympus"}},
            "settings.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            {"settings": {"strategy": "random"}},
            "settings.strategy: Input should be",
        ),
        (
            {"server": {"port": 70000}},
            "server.port: Input should be less than or equal to 65535",
        ),
        (
            {"routes": [{"name": "r", "deployments": []}]},
            "routes.0.deployments: List should have at least 1 item",
        ),
    ],
)
def test_invalid_fields_are_named_by_their_path(data: dict, expected: str) -> None:
    assert expected in error_of(data)


def test_every_invalid_field_is_reported_at_once() -> None:
    msg = error_of({"server": {"port": -1}, "settings": {"max_attempts": 0}})
    assert "server.port:" in msg
    assert "settings.max_attempts:" in msg


def test_unknown_provider_in_a_route_names_the_deployment() -> None:
    msg = error_of(
        {"providers": [{"name": "openai", "keys": [{"secret": "s"}]}],
         "routes": [{"name": "r", "deployments": [
             {"provider": "openai", "model": "gpt-4o"}, {"provider": "anthropc", "model": "c"}]}]}
    )  # fmt: skip
    assert (
        "routes.0.deployments.1.provider: unknown provider 'anthropc' (configured: openai)" in msg
    )
    assert "(top level)" not in msg


def test_duplicate_ids_and_names_are_refused() -> None:
    keys = [{"id": "same", "secret": "a"}, {"id": "same", "secret": "b"}]
    assert "duplicate key id(s) ['same']" in error_of(
        {"providers": [{"name": "openai", "keys": keys}]}
    )
    assert "providers: duplicate name(s) ['openai']" in error_of(
        {"providers": [{"name": "openai"}, {"name": "openai"}]}
    )
    route = {"name": "r", "deployments": [{"provider": "openai", "model": "gpt-4o"}]}
    assert "routes: duplicate route names" in error_of(
        {"providers": [{"name": "openai"}], "routes": [route, route]}
    )
    # Keys of different providers share one id space too.
    assert "duplicate key id(s) ['k']" in error_of(
        {"providers": [{"name": "openai", "keys": [{"id": "k", "secret": "a"}]},
                       {"name": "groq", "keys": [{"id": "k", "secret": "b"}]}]}
    )  # fmt: skip


def test_provider_without_preset_needs_protocol_url_and_models() -> None:
    assert "providers.0.protocol: required" in error_of({"providers": [{"name": "mine"}]})
    assert "providers.0.base_url: required" in error_of(
        {"providers": [{"name": "mine", "protocol": "openai"}]}
    )
    assert "providers.0.models: a provider without a preset needs at least one model" in error_of(
        {"providers": [{"name": "mine", "protocol": "openai", "base_url": "http://h"}]}
    )
    assert "providers.0.preset: unknown preset 'nope'" in error_of(
        {"providers": [{"name": "mine", "preset": "nope"}]}
    )


def test_auto_is_a_reserved_route_name() -> None:
    msg = error_of(
        {"providers": [{"name": "openai"}],
         "routes": [{"name": "auto", "deployments": [{"provider": "openai", "model": "gpt-4o"}]}]}
    )  # fmt: skip
    assert "routes.0.name: 'auto' is reserved" in msg


# -- implicit routes ------------------------------------------------------------------------------


def test_implicit_routes_per_model_and_auto() -> None:
    cfg = resolve(
        parse_spec(
            {"providers": [
                {"name": "openai", "keys": [{"secret": "a"}]},
                {"name": "or", "preset": "openrouter", "models": ["openai/gpt-4o-mini", "gpt-4o-mini"]},
            ],
             "routes": [{"name": "gpt-4o", "deployments": [{"provider": "or", "model": "gpt-4o-mini"}]}]},
            {},
        ),
        {},
    )  # fmt: skip
    # A model served by two providers is one route over both, in provider order.
    mini = cfg.routes["gpt-4o-mini"]
    assert mini.implicit
    assert [(d.provider, d.order) for d in mini.deployments] == [("openai", 0), ("or", 1)]
    assert [d.priority for d in mini.deployments] == [5, 9]  # the presets' provider priority
    # An explicit route wins over the implicit route of the same name.
    assert not cfg.routes["gpt-4o"].implicit
    assert [d.provider for d in cfg.routes["gpt-4o"].deployments] == ["or"]
    # "auto": each provider's first cheap and first capable model.
    auto = cfg.routes["auto"]
    assert [(d.provider, d.model.name, d.tier) for d in auto.deployments] == [
        ("openai", "gpt-4o-mini", "cheap"),
        ("openai", "gpt-4o", "capable"),
        ("or", "openai/gpt-4o-mini", "cheap"),
        ("or", "gpt-4o-mini", None),  # a model the preset does not know has no tier
    ]
    assert [d.order for d in auto.deployments] == [0, 1, 2, 3]
    assert next(iter(cfg.routes)) == "gpt-4o"  # explicit routes first
    assert cfg.route("nope") is None


def test_model_aliases_serve_names_nothing_configured_serves() -> None:
    cfg = resolve(
        parse_spec(
            {"providers": [{"name": "groq", "keys": [{"secret": "a"}]}],
             "settings": {"model_aliases": {"claude-*": "auto", "gpt-5*": "llama-3.1-8b-instant"}}},
            {},
        ),
        {},
    )  # fmt: skip
    claude = cfg.route("claude-sonnet-4-5")
    assert claude is not None and claude.name == "auto"
    gpt5 = cfg.route("gpt-5-codex")
    assert gpt5 is not None and [d.model.name for d in gpt5.deployments] == ["llama-3.1-8b-instant"]
    assert cfg.route("gemini-2.5-pro") is None  # no alias matches
    assert cfg.route("llama-3.3-70b-versatile") is cfg.routes["llama-3.3-70b-versatile"]


def test_a_model_alias_must_name_a_route_or_a_served_model() -> None:
    msg = error_of(
        {"providers": [{"name": "groq"}], "settings": {"model_aliases": {"claude-*": "smart"}}}
    )
    assert "settings.model_aliases.claude-*: 'smart' is neither a route nor a model" in msg


def test_embedding_models_have_their_kind_and_stay_out_of_auto() -> None:
    cfg = resolve(
        parse_spec({"providers": [{"name": "openai", "keys": [{"secret": "a"}]}]}, {}), {}
    )
    embed = cfg.routes["text-embedding-3-small"].deployments[0].model
    assert (embed.kind, embed.price.input) == ("embedding", 0.02)
    assert all(d.model.kind == "chat" for d in cfg.routes["auto"].deployments)


def test_no_providers_means_no_auto_route() -> None:
    assert "auto" not in resolve(parse_spec({}, {}), {}).routes


# -- environment discovery --------------------------------------------------------------------------


def test_discovery_finds_keys_and_numbered_extra_keys() -> None:
    env = {
        "OPENAI_API_KEY": "sk-one",
        "OPENAI_API_KEY_2": "sk-two",
        "OPENAI_API_KEY_3": "sk-one",  # duplicates are dropped
        "OPENAI_API_KEY_7": "sk-seven",
        "UNRELATED": "x",
    }
    cfg = load_config(None, env)
    assert cfg.source == "environment"
    assert list(cfg.providers) == ["openai"]
    assert [(k.id, k.secret) for k in cfg.keys] == [
        ("openai-1", "sk-one"),
        ("openai-2", "sk-two"),
        ("openai-7", "sk-seven"),  # the id of its variable
    ]
    assert all(k.limits == () and k.plan == "paid" for k in cfg.keys)
    assert "auto" in cfg.routes


def test_a_discovered_keys_id_follows_its_variable_when_another_is_removed() -> None:
    """The ledger keeps usage by key id: removing OPENAI_API_KEY_2 must not give its id to
    the secret of OPENAI_API_KEY_4 (which would carry openai-2's usage)."""
    env = {"OPENAI_API_KEY": "sk-one", "OPENAI_API_KEY_2": "sk-two", "OPENAI_API_KEY_4": "sk-four"}
    ids = {k.secret: k.id for k in load_config(None, env).keys}
    assert ids == {"sk-one": "openai-1", "sk-two": "openai-2", "sk-four": "openai-4"}
    del env["OPENAI_API_KEY_2"]
    assert {k.secret: k.id for k in load_config(None, env).keys} == {
        "sk-one": "openai-1",
        "sk-four": "openai-4",
    }
    del env["OPENAI_API_KEY"]
    assert [(k.id, k.secret) for k in load_config(None, env).keys] == [("openai-4", "sk-four")]


def test_a_second_prefix_of_a_provider_has_ids_of_its_own() -> None:
    env = {"GEMINI_API_KEY": "g-one", "GOOGLE_API_KEY": "g-google", "GOOGLE_API_KEY_3": "g-3"}
    ids = [(k.id, k.secret) for k in load_config(None, env).keys]
    assert ids == [
        ("gemini-1", "g-one"),
        ("gemini-google-1", "g-google"),
        ("gemini-google-3", "g-3"),
    ]
    del env["GEMINI_API_KEY"]  # the GOOGLE_API_KEY secret keeps its id, not gemini-1's
    assert [k.id for k in load_config(None, env).keys] == ["gemini-google-1", "gemini-google-3"]
    hf = {"HF_API_KEY": "h-one", "HF_KEY": "h-key", "HUGGINGFACE_API_KEY_2": "h-2"}
    ids = [(k.id, k.secret) for k in load_config(None, hf).keys]
    assert ids == [
        ("huggingface-2", "h-2"),
        ("huggingface-hf-1", "h-one"),
        ("huggingface-hf-key", "h-key"),
    ]


def test_a_free_plan_from_the_environment_applies_the_presets_free_tier() -> None:
    cfg = load_config(None, {"GROQ_API_KEY": "g", "GROQ_PLAN": "free", "OPENAI_API_KEY": "o"})
    groq, openai = cfg.keys
    assert groq.plan == "free"
    assert [(lim.id, lim.amount, lim.source) for lim in groq.limits] == [
        ("key:groq-1/requests/day", 14_400, "free-plan preset")
    ]
    assert (openai.plan, openai.limits) == ("paid", ())


def test_plan_free_on_a_provider_or_a_key_in_yaml() -> None:
    spec = parse_spec(
        {
            "providers": [
                {"name": "anthropic", "plan": "free", "keys": [{"secret": "a1"}]},
                {
                    "name": "openai",
                    "keys": [
                        {"id": "o-free", "secret": "o1", "plan": "free"},
                        {"id": "o-paid", "secret": "o2"},
                        {"id": "o-own", "secret": "o3", "plan": "free", "limits": [{"amount": 9}]},
                    ],
                },
            ]
        },
        {},
    )
    limits = {k.id: [(lim.id, lim.source) for lim in k.limits] for k in resolve(spec, {}).keys}
    assert limits == {
        "anthropic-1": [("key:anthropic-1/tokens/month", "free-plan preset")],
        "o-free": [("key:o-free/tokens/once", "free-plan preset")],
        "o-paid": [],
        "o-own": [("key:o-own/tokens/month", "config")],  # configured limits win over the plan
    }
    # The environment's plan applies to a YAML provider that does not set its own.
    spec = parse_spec({"providers": [{"name": "groq", "keys": [{"secret": "g"}]}]}, {})
    assert resolve(spec, {"GROQ_PLAN": "free"}).keys[0].plan == "free"


@pytest.mark.parametrize("value", ["gratis", "1"])
def test_a_bad_plan_variable_names_it(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"GROQ_PLAN: '{value}': use 'free' or 'paid'"):
        load_config(None, {"GROQ_API_KEY": "g", "GROQ_PLAN": value})


@pytest.mark.parametrize(
    ("var", "provider", "protocol"),
    [
        ("GOOGLE_API_KEY", "gemini", "gemini"),
        ("GEMINI_API_KEY", "gemini", "gemini"),
        ("KIMI_API_KEY", "kimi", "openai"),
        ("MOONSHOT_API_KEY", "kimi", "openai"),
        ("ANTHROPIC_API_KEY", "anthropic", "anthropic"),
        ("HF_KEY", "huggingface", "openai"),
        ("GROQ_API_KEY", "groq", "openai"),
    ],
)
def test_discovery_maps_environment_names_to_presets(
    var: str, provider: str, protocol: str
) -> None:
    cfg = load_config(None, {var: "secret-value-1234"})
    assert list(cfg.providers) == [provider]
    assert cfg.providers[provider].protocol == protocol
    assert cfg.keys[0].secret == "secret-value-1234"


def test_limit_overrides_from_the_environment() -> None:
    cfg = load_config(
        None,
        {
            "GROQ_API_KEY": "g",
            "GROQ_LIMIT": "20_000",  # seed 002: replaces the preset's first limit amount
            "ANTHROPIC_API_KEY": "a",
            "ANTHROPIC_MONTHLY_LIMIT": "1000000",  # seed 003: the monthly token budget
            "OPENROUTER_API_KEY": "o",
            "OPENROUTER_LIMIT": "777",  # no preset limit: a monthly token limit
        },
    )
    limits = {k.provider: [(lim.id, lim.amount) for lim in k.limits] for k in cfg.keys}
    assert limits["groq"] == [("key:groq-1/requests/day", 20_000)]
    assert limits["anthropic"] == [("key:anthropic-1/tokens/month", 1_000_000)]
    assert limits["openrouter"] == [("key:openrouter-1/tokens/month", 777)]
    assert {lim.source for k in cfg.keys for lim in k.limits} == {"env override"}


def test_monthly_limit_adds_to_a_free_plans_preset_with_another_window() -> None:
    env = {"KIMI_API_KEY": "k", "MOONSHOT_MONTHLY_LIMIT": "50000", "KIMI_PLAN": "free"}
    cfg = load_config(None, env)
    assert [(lim.id, lim.amount, lim.source) for lim in cfg.keys[0].limits] == [
        ("key:kimi-1/tokens/minute", 60_000, "free-plan preset"),
        ("key:kimi-1/tokens/month", 50_000, "env override"),
    ]
    del env["KIMI_PLAN"]  # on a paid plan only the override binds
    assert [lim.id for lim in load_config(None, env).keys[0].limits] == ["key:kimi-1/tokens/month"]


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("GROQ_LIMIT", "lots", "GROQ_LIMIT: 'lots' is not a number"),
        ("GROQ_LIMIT", "-5", "GROQ_LIMIT: must not be negative"),
        ("GROQ_MONTHLY_LIMIT", "1e", "GROQ_MONTHLY_LIMIT: '1e' is not a number"),
    ],
)
def test_bad_limit_overrides_name_the_variable(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"GROQ_API_KEY": "g", var: value})


def test_base_url_override_from_the_environment() -> None:
    cfg = load_config(
        None, {"OPENAI_API_KEY": "sk", "OPENAI_BASE_URL": "http://127.0.0.1:7000/v1/"}
    )
    assert cfg.providers["openai"].base_url == "http://127.0.0.1:7000/v1"
    # A YAML provider using the preset picks it up too, unless it sets its own.
    spec = parse_spec({"providers": [{"name": "openai", "keys": [{"secret": "s"}]}]}, {})
    env = {"OPENAI_BASE_URL": "http://fake:1/v1"}
    assert resolve(spec, env).providers["openai"].base_url == "http://fake:1/v1"


def test_bad_base_url_in_the_environment_is_a_config_error_naming_it() -> None:
    with pytest.raises(
        ConfigError, match=r"OPENAI_BASE_URL: .*must start with http:// or https://"
    ):
        load_config(None, {"OPENAI_API_KEY": "sk", "OPENAI_BASE_URL": "localhost:8080"})
    spec = parse_spec({"providers": [{"name": "openai", "keys": [{"secret": "s"}]}]}, {})
    with pytest.raises(
        ConfigError, match=r"OPENAI_BASE_URL: .*must start with http:// or https://"
    ):
        resolve(spec, {"OPENAI_BASE_URL": "localhost:8080"})


def test_no_keys_in_the_environment_is_an_empty_config() -> None:
    spec = discover_spec({"PATH": "/usr/bin"})
    assert spec.providers == []


def test_testing_config_factory_resolves_without_the_process_environment() -> None:
    from quotaflow.testing import config

    cfg = config({"providers": [{"name": "openai", "keys": [{"secret": "sk-test"}]}]})
    assert cfg.source == "test"
    assert [k.id for k in cfg.keys] == ["openai-1"]


# -- models beyond the catalog ---------------------------------------------------------------------


def test_models_outside_the_catalog_go_to_the_provider_they_belong_to() -> None:
    cfg = load_config(None, {"OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a", "GROQ_API_KEY": "g"})

    def served_by(model: str) -> list[tuple[str, str]] | None:
        route = cfg.route(model)
        return None if route is None else [(d.provider, d.model.name) for d in route.deployments]

    assert served_by("o3-mini") == [("openai", "o3-mini")]
    assert served_by("chatgpt-4o-latest") == [("openai", "chatgpt-4o-latest")]
    assert served_by("claude-3-7-sonnet-latest") == [("anthropic", "claude-3-7-sonnet-latest")]
    assert served_by("openai/o3-mini") == [("openai", "o3-mini")]  # provider/model
    assert served_by("groq/llama-3.3-70b-versatile") == [("groq", "llama-3.3-70b-versatile")]
    assert served_by("gemini-2.5-pro") is None  # no gemini key configured
    assert served_by("mistral/large") is None
    # A router's vendor/model names go to it when that vendor is not configured itself.
    routed = load_config(None, {"OPENROUTER_API_KEY": "r"}).route("qwen/qwen3-32b")
    assert routed is not None and routed.deployments[0].provider == "openrouter"


def test_yaml_model_patterns_replace_the_presets() -> None:
    spec = parse_spec(
        {"providers": [{"name": "openai", "model_patterns": ["my-*"], "keys": [{"secret": "s"}]}]},
        {},
    )
    cfg = resolve(spec, {})
    assert cfg.route("my-model") is not None
    assert cfg.route("o3-mini") is None


# -- the environment users already have ------------------------------------------------------------


def test_a_dotenv_file_is_read_and_the_real_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quotaflow.config.environment import process_environment

    (tmp_path / ".env").write_text("GROQ_API_KEY=from-file\nGROQ_PLAN=free\n")
    monkeypatch.setenv("GROQ_API_KEY", "from-env")
    env = process_environment(tmp_path)
    assert (env["GROQ_API_KEY"], env["GROQ_PLAN"]) == ("from-env", "free")


def test_seed_003s_variables() -> None:
    env = {
        "ANTHROPIC_API_KEY": "a",
        "OPENAI_API_KEY": "o",
        "OPENAI_MODEL": "gpt-4.1",
        "OPENAI_MAX_TOKENS": "1024",
        "OPENAI_TEMPERATURE": "0.7",
        "ENABLE_OPENAI_FALLBACK": "true",
        "OPENAI_FALLBACK_THRESHOLD": "0.9",
    }
    cfg = load_config(None, env)
    openai = cfg.providers["openai"]
    assert openai.request_defaults == {"max_tokens": 1024, "temperature": 0.7}
    assert [
        (d.provider, d.model.name) for d in cfg.routes["auto"].deployments if d.provider == "openai"
    ] == [("openai", "gpt-4.1")]
    assert (cfg.settings.provider_order, cfg.settings.switch_threshold) == (
        ["anthropic", "openai"],
        0.9,
    )
    off = load_config(None, {**env, "ENABLE_OPENAI_FALLBACK": "false"})
    assert off.settings.provider_order == []
    assert {d.provider for d in off.routes["auto"].deployments} == {"anthropic"}
    assert off.route("gpt-4o") is not None  # named OpenAI models are still served


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("OPENAI_TEMPERATURE", "hot", "OPENAI_TEMPERATURE: 'hot' is not a number"),
        ("OPENAI_FALLBACK_THRESHOLD", "5", "OPENAI_FALLBACK_THRESHOLD: 5 must be between"),
        ("ENABLE_OPENAI_FALLBACK", "maybe", "ENABLE_OPENAI_FALLBACK: 'maybe': use true or false"),
        ("QUOTAFLOW_STRATEGY", "fastest", "QUOTAFLOW_STRATEGY: 'fastest': use one of priority"),
    ],
)
def test_bad_seed_003_and_strategy_variables_name_the_variable(
    var: str, value: str, message: str
) -> None:
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "ENABLE_OPENAI_FALLBACK": "1"}
    with pytest.raises(ConfigError, match=message):
        load_config(None, {**env, var: value})


def test_quotaflow_strategy_sets_the_strategy_and_key_hints_name_the_meant_variable() -> None:
    env = {
        "OPENAI_APIKEY": "x",
        "OPENAI_KEY": "y",
        "AWS_SECRET_KEY": "z",
        "QUOTAFLOW_STRATEGY": "cost",
    }
    cfg = load_config(None, env)
    assert cfg.settings.strategy == "cost"
    assert cfg.notes == (
        "OPENAI_APIKEY looks like a key but is not read: did you mean OPENAI_API_KEY?",
        "OPENAI_KEY looks like a key but is not read: did you mean OPENAI_API_KEY?",
    )


@pytest.mark.parametrize(("policy", "expected"), [("highest", (2.5, 10.0)), ("zero", (0.0, 0.0))])
def test_a_model_with_no_known_price_gets_the_unpriced_policys_price(
    policy: str, expected: tuple[float, float]
) -> None:
    spec = parse_spec(
        {
            "settings": {"unpriced": policy},
            "providers": [{"name": "openai", "keys": [{"secret": "s"}]}],
        },
        {},
    )
    route = resolve(spec, {}).route("o3-pro-2030")
    assert route is not None
    price = route.deployments[0].model.price
    assert ((price.input, price.output), price.estimated) == (expected, True)
    # A catalog model the price table knows keeps its price.
    assert resolve(spec, {}).route("gpt-4o-mini").deployments[0].model.price.estimated is False  # type: ignore[union-attr]
