"""``POST /v1/embeddings`` end to end: the official ``openai`` SDK (and LangChain's
``OpenAIEmbeddings`` when installed) → a real ``quotaflow serve`` → fake providers that embed
(OpenAI-compatible ``/embeddings``, Gemini ``batchEmbedContents``), with fallback between
them and each answer's accounting in ``/api/history``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from quotaflow.fake_provider.embeddings import vector
from tests.e2e.procs import Proc, fake_control, fake_provider, gateway

pytestmark = pytest.mark.e2e

K_OPENAI, K_GEMINI = "sk-embed-openai-0001", "sk-embed-gemini-0002"
PRICE = 0.5  # USD per million input tokens


@dataclass(frozen=True)
class Stack:
    gw: Proc
    openai_fake: Proc
    gemini_fake: Proc

    def history(self, n: int = 10) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.gw.url}/api/history?limit={n}", timeout=10) as r:
            rows: list[dict[str, Any]] = json.loads(r.read())["history"]
        return rows

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gw.url + "/v1", api_key="unused", max_retries=0, timeout=20
        )


CONFIG = """settings:
  strategy: priority
  max_wait_s: 0
providers:
  - name: oa
    protocol: openai
    base_url: {oa}/v1
    priority: 1
    models:
      - {{name: embed-small, kind: embedding, input: {price}, output: 0}}
      - {{name: chat-small, input: 1, output: 1}}
    keys:
      - {{id: oa-1, secret: {k1}, limits: []}}
  - name: gm
    protocol: gemini
    base_url: {gm}/v1beta
    priority: 2
    models:
      - {{name: embed-small, kind: embedding, input: {price}, output: 0}}
    keys:
      - {{id: gm-1, secret: {k2}, limits: []}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home: Path = tmp_path_factory.mktemp("embeddings")
    with contextlib.ExitStack() as es:
        oa = es.enter_context(fake_provider("openai", "--key", K_OPENAI))
        gm = es.enter_context(fake_provider("gemini", "--key", K_GEMINI))
        cfg = CONFIG.format(oa=oa.url, gm=gm.url, k1=K_OPENAI, k2=K_GEMINI, price=PRICE)
        gw = es.enter_context(gateway(cfg, home))
        yield Stack(gw, oa, gm)


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    for fake, key in ((stack.openai_fake, K_OPENAI), (stack.gemini_fake, K_GEMINI)):
        fake_control(fake, "/_fake/reset")
        fake_control(fake, "/_fake/keys", {"key": key, "quota_tokens": None, "invalid": False})
    return stack


def test_sdk_default_base64_and_float_with_usage_cost_and_door(fresh: Stack) -> None:
    with fresh.client() as c:
        raw = c.embeddings.with_raw_response.create(model="embed-small", input=["hello", "world!"])
        resp = raw.parse()  # the SDK asked for base64 and decoded it
        assert [d.embedding for d in resp.data] == [
            pytest.approx(vector("hello")),
            pytest.approx(vector("world!")),
        ]
        assert resp.usage.prompt_tokens == 2 + 2  # ceil(5/4) + ceil(6/4)
        assert raw.headers["x-quotaflow-provider"] == "oa"
        floats = c.embeddings.create(
            model="embed-small", input="hello", encoding_format="float", dimensions=4
        )
    assert floats.data[0].embedding == pytest.approx(vector("hello", 4))
    row = fresh.history(1)[0]
    assert (row["door"], row["provider"], row["status"], row["tokens_used"]) == (
        "embeddings", "oa", "ok", 2,
    )  # fmt: skip


def test_falls_back_to_gemini_with_base64_encoded_by_the_gateway(fresh: Stack) -> None:
    fake_control(fresh.openai_fake, "/_fake/keys", {"key": K_OPENAI, "invalid": True})
    with fresh.client() as c:
        raw = c.embeddings.with_raw_response.create(
            model="embed-small", input=["hello"], dimensions=6
        )
    resp = raw.parse()
    assert raw.headers["x-quotaflow-provider"] == "gm"
    assert raw.headers["x-quotaflow-attempts"] == "2"
    assert resp.data[0].embedding == pytest.approx(vector("hello", 6))
    first, second = fresh.history(2)[::-1]
    assert (first["provider"], first["status"]) == ("oa", "error")
    assert (second["provider"], second["status"], second["door"]) == ("gm", "ok", "embeddings")


def test_raw_base64_is_little_endian_float32(fresh: Stack) -> None:
    body = json.dumps({"model": "embed-small", "input": "abc", "encoding_format": "base64"})
    req = urllib.request.Request(
        fresh.gw.url + "/v1/embeddings", body.encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        data = json.loads(r.read())["data"][0]["embedding"]
    raw = base64.b64decode(data)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(vector("abc"))


def test_models_list_the_doors_each_model_is_reached_through(fresh: Stack) -> None:
    with fresh.client() as c:
        models = {m.id: m.model_dump() for m in c.models.list()}
    assert models["embed-small"]["doors"] == ["embeddings"]
    assert models["chat-small"]["doors"] == ["chat", "messages", "responses", "gemini"]
    assert models["auto"]["owned_by"] == "oa"  # the Gemini provider has no chat model


def test_bad_input_is_a_clear_openai_error(fresh: Stack) -> None:
    with fresh.client() as c, pytest.raises(openai.BadRequestError, match="input"):
        c.embeddings.create(model="embed-small", input=[])
    with fresh.client() as c, pytest.raises(openai.BadRequestError, match="embedding"):
        c.embeddings.create(model="chat-small", input="x")


def test_langchain_openai_embeddings(fresh: Stack) -> None:
    lc = pytest.importorskip("langchain_openai")
    emb = lc.OpenAIEmbeddings(
        model="embed-small", base_url=fresh.gw.url + "/v1", api_key="unused",
        check_embedding_ctx_length=False,  # else it tokenizes with tiktoken, which downloads
    )  # fmt: skip
    assert emb.embed_query("hello") == pytest.approx(vector("hello"))
    assert fresh.history(1)[0]["door"] == "embeddings"
