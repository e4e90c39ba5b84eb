"""No request shape takes an agent's budget past its limit (through the real server).

The upstream bills the worst case every request allows (``n`` choices at the cap each, the
gateway's prompt estimate); hypothesis draws batches of requests — ``n``, ``max_tokens``,
``max_completion_tokens``, tools, streams — sent concurrently by one agent with a fresh
token budget, and the ledger must show no more than the budget billed.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotaflow.engine.tokens import estimate_prompt_tokens
from tests.e2e.procs import ledger_rows
from tests.e2e_helpers import Served, served
from tests.hostile_upstream import hostile_upstream

pytestmark = pytest.mark.e2e

TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "x" * 300,
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]  # fmt: skip
_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with hostile_upstream() as up:
        cfg = f"""
settings: {{max_wait_s: 0}}
providers:
  - name: openai
    base_url: {up.url}/v1
    keys: [{{id: k1, secret: sk-hostile-biller-0001, limits: [{{metric: tokens, window: day, amount: 1000000000}}]}}]
"""
        with served(cfg, tmp_path_factory.mktemp("shapes") / "home") as s:
            yield s


def new_agent(s: Served, budget: int) -> tuple[str, str]:
    name = f"shape{next(_names)}"
    body = {"name": name, "budgets": [{"metric": "tokens", "window": "day", "amount": budget}]}
    status, out = s.admin("POST", "/api/agents", body)
    assert status == 201, out
    return name, out["api_key"]


def send(s: Served, key: str, body: dict[str, Any]) -> int:
    return send_full(s, key, body)[0]


def send_full(s: Served, key: str, body: dict[str, Any]) -> tuple[int, str]:
    req = urllib.request.Request(
        s.url + "/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def billed(s: Served, agent: str) -> int:
    return sum(r["total_tokens"] or 0 for r in ledger_rows(s.home, "agent = ?", (agent,)))


shape = st.fixed_dictionaries(
    {},
    optional={
        "n": st.integers(1, 12),
        "best_of": st.integers(1, 6),
        "max_tokens": st.integers(1, 600),
        "max_completion_tokens": st.integers(1, 600),
        "tools": st.just(TOOLS),
        "stream": st.booleans(),
        "content": st.text(alphabet="ab cd", min_size=1, max_size=400),
    },
)


@given(budget=st.integers(50, 3000), shapes=st.lists(shape, min_size=1, max_size=6))
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_shape_exceeds_a_budget(server: Served, budget: int, shapes: list[dict[str, Any]]) -> None:  # fmt: skip
    name, key = new_agent(server, budget)
    bodies = []
    for sh in shapes:
        content = sh.pop("content", "hi")
        bodies.append({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **sh})  # fmt: skip
    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(lambda b: send(server, key, b), bodies))
    assert all(st in (200, 429) for st in statuses), statuses
    assert billed(server, name) <= budget
    if all(worst_case(b) is not None for b in bodies) and sum(map(worst_case, bodies)) <= budget:  # type: ignore[arg-type]
        assert statuses == [200] * len(bodies)  # what fits is served: the test is not vacuous


def worst_case(body: dict[str, Any]) -> int | None:
    caps = [body[k] for k in ("max_tokens", "max_completion_tokens") if k in body]
    if not caps:
        return None
    return estimate_prompt_tokens(body) + max(body.get("n", 1), body.get("best_of", 1)) * min(caps)


def test_n_times_max_tokens_is_reserved(server: Served) -> None:
    name, key = new_agent(server, 1000)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 50, "max_tokens": 100}  # fmt: skip
    assert send(server, key, body) == 429
    assert billed(server, name) == 0
    assert send(server, key, {**body, "n": 5}) == 200  # 5 x 100 fits
    assert 500 <= billed(server, name) <= 1000


def test_unbounded_choices_are_clamped_to_the_headroom(server: Served) -> None:
    name, key = new_agent(server, 1000)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 4}
    assert send_full(server, key, body)[0] == 200
    assert 0 < billed(server, name) <= 1000
