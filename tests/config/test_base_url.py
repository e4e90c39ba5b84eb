"""A provider URL that can never be called is refused when the config loads."""

from __future__ import annotations

import pytest

from quotaflow.config.load import load_config, parse_spec
from quotaflow.errors import ConfigError


def _provider(url: str) -> dict[str, object]:
    return {"providers": [{"name": "x", "protocol": "openai", "base_url": url, "models": ["m"]}]}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999/v1", "bad port"),
        ("http://127.0.0.1:port/v1", "bad port"),
        ("http://127.0.0.1:0/v1", "bad port"),
        ("https:///v1", "no host"),
        ("https://api.example.com/caf\u00e9", "non-ASCII"),
        ("https://api.example.com/v 1", "space or a control character"),
        ("https://api.example.com/v1#x", "fragment"),
        ("api.example.com/v1", "must start with http:// or https://"),
    ],
)
def test_an_uncallable_base_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"providers\.0\.base_url: .*{message}"):
        parse_spec(_provider(url), {})


def test_the_same_check_applies_to_the_environment_override() -> None:
    with pytest.raises(ConfigError, match=r"OPENAI_BASE_URL: .*bad port"):
        load_config(None, {"OPENAI_API_KEY": "sk", "OPENAI_BASE_URL": "http://h:123456/v1"})


def test_callable_urls_load() -> None:
    spec = parse_spec(_provider("https://[::1]:8443/v1/"), {})
    assert spec.providers[0].base_url == "https://[::1]:8443/v1"


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("socks5://127.0.0.1:1080", "http:// URL"),
        ("http://:3128", "no host"),
        ("http://u:secret@proxy:99999", "bad port"),
    ],
)
def test_a_bad_proxy_setting_is_a_config_error(proxy: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"settings\.proxy: .*{message}") as err:
        parse_spec({"settings": {"proxy": proxy}}, {})
    assert "secret" not in str(err.value)


def test_proxy_setting_values() -> None:
    assert parse_spec({"settings": {"proxy": "NONE"}}, {}).settings.proxy == "none"
    url = "http://u:p@proxy.internal:3128"
    assert parse_spec({"settings": {"proxy": url}}, {}).settings.proxy == url
    assert parse_spec({}, {}).settings.proxy is None
