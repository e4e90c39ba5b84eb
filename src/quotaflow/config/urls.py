"""A provider's base URL, checked at load: a URL that can never be called is a config error.

Left to the first request, the same mistake would look like a provider failing (a connection
error, a fallback to another key, a key marked unhealthy) instead of the typo it is.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def check_base_url(url: str) -> str:
    """``url`` without its trailing slash; ``ValueError`` saying what is wrong with it."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("base_url must start with http:// or https://")
    if not url.isascii():
        raise ValueError(f"base_url {url!r} has non-ASCII characters: percent-encode them")
    if any(c in url for c in " \t\r\n\0"):
        raise ValueError(f"base_url {url!r} has a space or a control character")
    parts = _host_and_port(url, f"base_url {url!r}")
    if parts.fragment:
        raise ValueError(f"base_url {url!r} has a #fragment, which is never sent")
    return url.rstrip("/")


def check_proxy_url(url: str) -> str:
    """``settings.proxy``: ``none``, or an http:// proxy URL with a host and a valid port."""
    if url.strip().lower() == "none":
        return "none"
    if not url.startswith("http://"):
        raise ValueError(
            "proxy must be 'none' or an http:// URL (http://[user:password@]host:port)"
        )
    _host_and_port(url, f"proxy {_shown(url)}")
    return url


def _host_and_port(url: str, what: str) -> SplitResult:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{what} has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0  # not a number, or over 65535
    if port == 0:
        raise ValueError(f"{what} has a bad port (a number from 1 to 65535)")
    return parts


def _shown(url: str) -> str:
    """The URL without its password, for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    return repr(url.replace(f":{parts.password}@", ":***@", 1))
