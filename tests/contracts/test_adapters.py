"""One error contract, run over every adapter: what each protocol's provider says when it
refuses becomes the same :class:`~quotaflow.adapters.base.UpstreamFailure` — the kind that
drives fallback, the status, the wait the provider asked for, the provider's message.

Each protocol's recorded refusals (``tests/adapters/golden/<protocol>/errors.json``, and the
OpenAI table below) are checked case by case; the rules every adapter keeps whatever its
provider sends (an HTML page, an empty body, a JSON shape it did not expect) are checked with
each protocol's own error envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import Adapter
from quotaflow.types import ErrorKind
from tests.adapters import golden

PROTOCOLS = ("openai", "anthropic", "gemini")

_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}
_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


def envelope(protocol: str, status: int, message: str) -> dict[str, Any]:
    """The error body ``protocol``'s provider sends with ``status``."""
    if protocol == "anthropic":
        return {"type": "error", "error": {"type": _ANTHROPIC_TYPE[status], "message": message}}
    if protocol == "gemini":
        return {"error": {"code": status, "message": message, "status": _GEMINI_STATUS[status]}}
    return {
        "error": {"message": message, "type": _OPENAI_TYPE[status], "param": None, "code": None}
    }


# OpenAI's refusals: (status, type, code, message, kind)
OPENAI_CASES: list[tuple[int, str | None, str | None, str, ErrorKind]] = [
    (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided", ErrorKind.AUTH),
    (403, None, "unsupported_country_region_territory", "Country not supported", ErrorKind.AUTH),
    (402, None, None, "Insufficient Balance", ErrorKind.QUOTA_EXHAUSTED),
    (404, "invalid_request_error", "model_not_found", "no such model", ErrorKind.NOT_FOUND),
    (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "maximum context length is 8192",
        ErrorKind.CONTEXT_TOO_LONG,
    ),
    (
        400,
        "invalid_request_error",
        "content_policy_violation",
        "flagged",
        ErrorKind.CONTENT_FILTERED,
    ),
    (400, "invalid_request_error", None, "Unrecognized request argument", ErrorKind.BAD_REQUEST),
    (500, "server_error", None, "boom", ErrorKind.SERVER_ERROR),
    (503, None, "server_is_overloaded", "slow down", ErrorKind.SERVER_ERROR),
    (408, None, None, "timeout", ErrorKind.TIMEOUT),
]


def _recorded() -> list[Any]:
    out = []
    for status, etype, code, message, kind in OPENAI_CASES:
        body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        case = {"status": status, "headers": {}, "body": body, "kind": kind.value}
        out.append(pytest.param("openai", case, id=f"openai-{code or etype or status}"))
    for protocol in ("anthropic", "gemini"):
        for case in golden(protocol, "errors.json")["cases"]:
            out.append(pytest.param(protocol, case, id=f"{protocol}-{case['name']}"))
    return out


@pytest.mark.parametrize(("protocol", "case"), _recorded())
def test_each_recorded_refusal_is_classified(protocol: str, case: dict[str, Any]) -> None:
    adapter = adapter_for(protocol)
    body = case["body"]
    fail = adapter.classify_error(case["status"], case.get("headers", {}), orjson.dumps(body))
    assert fail.kind is ErrorKind(case["kind"])
    assert fail.status == case["status"]
    error = body[0]["error"] if isinstance(body, list) else body["error"]
    assert fail.message == error["message"]
    if "retry_after_s" in case:
        assert fail.retry_after_s == case["retry_after_s"]
    if "provider_code" in case:
        assert fail.provider_code == case["provider_code"]
    if "openai_type" in case:
        assert fail.body == {
            "error": {
                "message": error["message"],
                "type": case["openai_type"],
                "param": None,
                "code": case["openai_code"],
            }
        }


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def adapter(protocol: str) -> Adapter:
    return adapter_for(protocol)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, ErrorKind.AUTH),
        (404, ErrorKind.NOT_FOUND),
        (429, ErrorKind.RATE_LIMITED),
        (500, ErrorKind.SERVER_ERROR),
        (503, ErrorKind.SERVER_ERROR),
    ],
)
def test_the_same_refusal_is_the_same_kind_in_every_protocol(
    protocol: str, adapter: Adapter, status: int, kind: ErrorKind
) -> None:
    fail = adapter.classify_error(status, {}, orjson.dumps(envelope(protocol, status, "nope")))
    assert (fail.kind, fail.status, fail.message) == (kind, status, "nope")


def test_a_retry_after_header_is_the_wait_when_the_body_names_none(
    protocol: str, adapter: Adapter
) -> None:
    body = orjson.dumps(envelope(protocol, 429, "slow down"))
    fail = adapter.classify_error(429, {"retry-after": "7"}, body)
    assert (fail.kind, fail.retry_after_s) == (ErrorKind.RATE_LIMITED, 7.0)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(502, ErrorKind.SERVER_ERROR), (429, ErrorKind.RATE_LIMITED), (401, ErrorKind.AUTH)],
)
def test_an_html_page_is_classified_by_its_status_and_quoted(
    adapter: Adapter, status: int, kind: ErrorKind
) -> None:
    page = b"<html><head><title>Bad Gateway</title></head><body>nginx</body></html>"
    fail = adapter.classify_error(status, {}, page)
    assert (fail.kind, fail.status) == (kind, status)
    assert "Bad Gateway" in fail.message


SHAPES: list[Callable[[], bytes]] = [
    lambda: b"",
    lambda: b"null",
    lambda: b"[]",
    lambda: b'"just text"',
    lambda: b'{"error": "a plain string"}',
    lambda: b'{"error": {"message": 5, "type": ["x"], "code": {}}}',
    lambda: b'{"error": {}}',
    lambda: b"{not json",
    lambda: "ümlaut \udcff".encode("utf-8", "surrogatepass"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda f: repr(f())[:30])
@pytest.mark.parametrize("status", [400, 429, 500])
def test_any_body_gives_a_failure_with_a_message_never_an_exception(
    adapter: Adapter, shape: Callable[[], bytes], status: int
) -> None:
    fail = adapter.classify_error(status, {}, shape())
    assert fail.status == status
    assert isinstance(fail.message, str) and fail.message
    assert fail.kind in (ErrorKind.BAD_REQUEST, ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR)
