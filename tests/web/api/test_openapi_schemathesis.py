"""Schemathesis over ``/openapi.json``: zero 5xx and zero schema violations.

The document is static (``quotaflow.web.api.openapi_spec``), so it is loaded without a server;
each generated case is sent to a real ``quotaflow serve`` process (default mode, with the
admin token) in front of a fake OpenAI provider.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from quotaflow.web.api.openapi_spec import build_spec
from tests.e2e_helpers import Served, fake_upstream, served

pytestmark = pytest.mark.e2e

# The event stream never ends by design; it has its own tests (tests/web/dashboard/test_handlers.py).
schema = schemathesis.openapi.from_dict(build_spec("test")).exclude(path="/api/events")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with fake_upstream("openai") as fake:
        cfg = f"""
settings: {{max_wait_s: 0.1}}
providers:
  - name: openai
    base_url: {fake.url}/v1
    keys: [{{id: openai-1, secret: sk-schemathesis-0001, limits: [{{metric: tokens, window: day, amount: 100000000}}]}}]
agents:
  - name: imperium
    providers: [openai]
"""
        with served(cfg, tmp_path_factory.mktemp("st") / "home") as s:
            yield s


def test_the_document_lists_every_route(server: Served) -> None:
    status, doc = server.call("GET", "/openapi.json")
    assert status == 200
    assert doc == build_spec(doc["info"]["version"])
    for path in ("/api/status", "/api/choose", "/api/token-usage/summary", "/v1/chat/completions"):
        assert path in doc["paths"]


def test_every_api_and_v1_route_is_documented(tmp_path) -> None:
    from quotaflow.config.load import load_config
    from quotaflow.runtime import build_gateway
    from quotaflow.web.app import create_app

    app = create_app(build_gateway(load_config(None, {}), tmp_path))
    served_routes = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith(("/api", "/v1"))
        and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in build_spec("x")["paths"].items() for m in ops}
    assert served_routes - documented == set()


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms(case: schemathesis.Case, server: Served) -> None:
    response = case.call(
        base_url=server.url, headers={"authorization": f"Bearer {server.admin_token}"}
    )
    case.validate_response(response, checks=CHECKS)
