"""Reusable real-process helpers: a gateway with its admin token, a fake provider, HTTP calls.

Builds on :mod:`tests.e2e.procs` (the lead's process runner)::

    with fake_upstream() as fake, served(config_for(fake.url), tmp_path) as gw:
        status, body = gw.call("GET", "/api/status")
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.procs import Proc, fake_provider, gateway


@dataclass
class Served:
    """A running ``quotaflow serve``: its URL, home, output and (first start) admin token."""

    proc: Proc
    home: Path
    admin_token: str | None

    @property
    def url(self) -> str:
        return self.proc.url

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None,
        headers: dict[str, str] | None = None, raw: bytes | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        """One HTTP call; returns (status, parsed JSON or text). Never raises on 4xx/5xx."""
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("content-type", "application/json")
        if token is not None:
            hdrs["authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.call(method, path, body, token=self.admin_token)


@contextlib.contextmanager
def served(
    config_yaml: str, home: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """``quotaflow serve --port 0 --home HOME`` with ``config_yaml``; killed at the end."""
    with gateway(config_yaml, home, *extra, env=env) as proc:
        left = home / "admin_token"  # a created token, left for the operator
        yield Served(proc, home, left.read_text().strip() if left.exists() else None)


@contextlib.contextmanager
def fake_upstream(protocol: str = "openai", *extra: str) -> Iterator[Proc]:
    """``python -m quotaflow fake-provider --port 0``; yields the process (``.url``)."""
    with fake_provider(protocol, *extra) as p:
        yield p
