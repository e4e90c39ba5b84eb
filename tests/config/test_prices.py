"""Prices come from the maintained ``genai-prices`` table, read when first needed: a model it
lists costs what the library itself calculates, a configured price wins, a model no table
knows follows ``settings.unpriced``, and the server's modules never import the library."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import genai_prices
import pytest

from quotaflow.config.load import parse_spec, resolve
from quotaflow.config.model import Config
from quotaflow.config.presets import PRESETS
from quotaflow.config.prices import FALLBACK, LIBRARY_PROVIDER, PriceBook, price_of, warm
from quotaflow.engine.pricing import LazyPrice, Price
from quotaflow.types import Usage


def config(models: list[object] | None = None, **settings: object) -> Config:
    provider: dict[str, object] = {"name": "openai", "keys": [{"secret": "s"}]}
    if models is not None:
        provider["models"] = models
    spec = parse_spec({"settings": settings, "providers": [provider]}, {})
    return resolve(spec, {})


def library_cost(model: str, provider: str, usage: Usage) -> float:
    calc = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.prompt_tokens,
            cache_read_tokens=usage.cached_tokens,
            output_tokens=usage.completion_tokens,
        ),
        model,
        provider_id=LIBRARY_PROVIDER.get(provider, provider),
    )
    return float(calc.total_price)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5"),  # tiered: dearer above 200k prompt tokens
        ("gemini", "gemini-2.5-pro"),
        ("deepseek", "deepseek-chat"),
    ],
)
@pytest.mark.parametrize(
    "usage",
    [
        Usage(prompt_tokens=1_200, completion_tokens=300, cached_tokens=400),
        Usage(prompt_tokens=250_000, completion_tokens=2_000, cached_tokens=50_000),
    ],
)
def test_a_model_the_library_lists_costs_what_the_library_calculates(
    provider: str, model: str, usage: Usage
) -> None:
    spec = parse_spec({"providers": [{"name": provider, "keys": [{"secret": "s"}]}]}, {})
    price = resolve(spec, {}).providers[provider].models[model].price
    assert not price.estimated
    assert price.cost_usd(usage) == pytest.approx(library_cost(model, provider, usage), rel=1e-9)


def test_a_model_outside_the_catalog_is_priced_by_the_library_when_it_lists_it() -> None:
    route = config().route("o3-mini")
    assert route is not None
    price = route.deployments[0].model.price
    usage = Usage(prompt_tokens=10_000, completion_tokens=1_000)
    assert not price.estimated
    assert price.cost_usd(usage) == pytest.approx(library_cost("o3-mini", "openai", usage))


def test_a_configured_price_wins_over_the_library_field_by_field() -> None:
    cfg = config(
        [
            {"name": "gpt-4o", "input": 1.0, "output": 2.0},
            {"name": "gpt-4o-mini", "output": 9.0},  # input and cached: the library's
        ]
    )
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    full = cfg.providers["openai"].models["gpt-4o"].price
    assert (full.input, full.output, full.estimated) == (1.0, 2.0, False)
    assert full.cost_usd(usage) == pytest.approx(3.0)
    part = cfg.providers["openai"].models["gpt-4o-mini"].price
    library = library_cost("gpt-4o-mini", "openai", Usage(prompt_tokens=1_000_000))
    assert (part.input, part.output) == (pytest.approx(library), 9.0)


@pytest.mark.parametrize("policy", ["highest", "zero"])
def test_a_model_no_table_knows_follows_the_unpriced_policy(policy: str) -> None:
    cfg = config(unpriced=policy)
    route = cfg.route("gpt-9-preview")
    assert route is not None
    price = route.deployments[0].model.price
    assert price.estimated
    known = [m.price for m in cfg.providers["openai"].models.values()]
    if policy == "highest":
        assert (price.input, price.output) == (
            max(p.input for p in known),
            max(p.output for p in known),
        )
        assert price.input > 0 and price.output > 0
    else:
        assert (price.input, price.output) == (0.0, 0.0)
    # A listed model with no known price, too (never a silent $0 under ``highest``).
    listed = config(["gpt-4o", "gpt-9-preview"], unpriced=policy).providers["openai"]
    assert listed.models["gpt-9-preview"].price.estimated
    assert listed.models["gpt-9-preview"].price.input == (
        listed.models["gpt-4o"].price.input if policy == "highest" else 0.0
    )


def test_the_fallback_table_holds_exactly_the_catalog_models_the_library_lacks() -> None:
    book = PriceBook(fallback={})
    lacking = {
        (p.name, m.name)
        for p in PRESETS.values()
        for m in p.models
        if book.known(p.name, m.name) is None
    }
    assert lacking == set(FALLBACK)
    # and every catalog model is priced by one of them
    for p in PRESETS.values():
        spec = parse_spec({"providers": [{"name": p.name, "keys": [{"secret": "s"}]}]}, {})
        assert warm(resolve(spec, {}).providers.values()) == [], p.name


def test_hugging_face_models_cost_the_dearest_of_its_inference_providers() -> None:
    price = PriceBook().known("huggingface", "meta-llama/Llama-3.3-70B-Instruct")
    assert price is not None and price.input > 0 and price.output > 0
    from genai_prices import data_snapshot

    listed = [
        m.get_prices(data_snapshot.get_snapshot().timestamp)
        for p in data_snapshot.get_snapshot().providers
        if p.id.startswith("huggingface_")
        and (m := p.find_model("meta-llama/llama-3.3-70b-instruct")) is not None
    ]
    assert len(listed) > 1
    assert price.output == max(float(Decimal(x.output_mtok)) for x in listed)


def test_prices_are_read_when_first_needed_and_kept() -> None:
    price = config().providers["openai"].models["gpt-4o"].price
    assert isinstance(price, LazyPrice) and not price.resolved
    assert price.input > 0
    assert price.resolved
    book = PriceBook()
    assert book.known("openai", "no-such-model-xyz") is None
    assert ("openai", "no-such-model-xyz") in book._known  # a miss is remembered too


def _modules_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'genai_prices')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(out.stdout))


def test_the_server_modules_and_a_loaded_config_leave_the_price_library_unimported() -> None:
    assert (
        _modules_after(
            "import quotaflow.cli.main, quotaflow.cli.serve, quotaflow.web.app, quotaflow.runtime\n"
            "from quotaflow.config.load import load_config\n"
            "cfg = load_config(None, {'OPENAI_API_KEY': 'sk-x', 'GROQ_API_KEY': 'g'})\n"
            "assert cfg.route('gpt-4o-mini') is not None"
        )
        == []
    )
    # the probe sees it once a price is read
    assert _modules_after(
        "from quotaflow.config.load import load_config\n"
        "cfg = load_config(None, {'OPENAI_API_KEY': 'sk-x'})\n"
        "cfg.providers['openai'].models['gpt-4o'].price.input"
    )


def test_a_provider_with_no_known_price_books_the_tables_dearest_model_not_zero() -> None:
    """A provider of its own (no preset, no priced model) serving a model no table knows:
    ``highest`` has no sibling to take the price of, and must still never book $0 — else a
    cost limit on that provider counts nothing and never holds. It books the dearest model
    the price table lists instead."""
    cfg = _inhouse("highest")
    price = cfg.providers["inhouse"].models["inhouse-model"].price
    assert price.estimated
    book = PriceBook()
    dearest = [p for lp in book.snapshot().providers for m in lp.models if (p := _now(m))]
    assert (price.input, price.output) == (
        max(p.input for p in dearest),
        max(p.output for p in dearest),
    )
    assert price.input > 0 and price.output > 0
    # A model outside the catalog, reached by pass-through, the same way.
    route = cfg.route("inhouse/another-model")
    assert route is not None
    other = route.deployments[0].model.price
    assert other.estimated and (other.input, other.output) == (price.input, price.output)
    # ``zero`` still books $0, as asked.
    assert _inhouse("zero").providers["inhouse"].models["inhouse-model"].price.output == 0.0


def _inhouse(policy: str) -> Config:
    cost_limit = {"metric": "cost", "window": "day", "amount": 0.01}
    provider = {
        "name": "inhouse",
        "protocol": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "models": ["inhouse-model"],
        "keys": [{"secret": "s", "limits": [cost_limit]}],
    }
    return resolve(parse_spec({"settings": {"unpriced": policy}, "providers": [provider]}, {}), {})


def _now(model: object) -> Price | None:
    from datetime import UTC, datetime

    return price_of(model.get_prices(datetime.now(UTC)))  # type: ignore[attr-defined]
