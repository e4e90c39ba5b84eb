"""``Client``: the advisory API of a running quotaflow server (seed 000), for agents that call
providers themselves::

    from quotaflow import Client

    client = Client("http://127.0.0.1:5050", token="qf-…")      # an agent key or the admin token
    with client.choose(tokens_estimate=2000) as lease:
        answer = my_llm_call(lease.provider, lease.api_key)
        lease.report(tokens_used=answer.usage.total_tokens)
    # the block's end reports the usage (POST /api/use); an exception reports a failure

A lease holds the estimate on the key until it is reported (or the server's hold expires), so
concurrent agents never overshoot the quota between choosing and reporting. Only the standard
library is used: importing this module starts nothing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

DEFAULT_URL = "http://127.0.0.1:5050"


class ClientError(Exception):
    """The server refused a call (``status`` is its HTTP status) or could not be reached (0)."""

    def __init__(self, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


@dataclass(slots=True)
class Lease:
    """A key chosen by the server, held until its usage is reported."""

    client: Client
    provider: str
    api_key: str
    key_id: str | None
    reservation_id: str | None
    remaining_after: float | None
    reason: str | None
    tokens_estimate: int
    raw: dict[str, Any] = field(default_factory=dict)
    tokens_used: int | None = None
    reported: bool = False

    def report(
        self, tokens_used: int | None = None, *, success: bool = True, reason: str | None = None
    ) -> dict[str, Any]:
        """Tell the server what the call used (default: the estimate); once per lease."""
        if self.reported:
            raise ClientError("this lease was already reported")
        used = self.tokens_estimate if tokens_used is None else tokens_used
        body: dict[str, Any] = {
            "provider": self.provider,
            "tokens_used": int(used),
            "success": success,
            "reason": reason,
        }
        if self.key_id:
            body["key_id"] = self.key_id
        if self.reservation_id:
            body["reservation_id"] = self.reservation_id
        self.reported = True
        self.tokens_used = int(used)
        return self.client.use(**body)

    def fail(self, reason: str, tokens_used: int = 0) -> dict[str, Any]:
        """Report a failed call (``success: false``)."""
        return self.report(tokens_used, success=False, reason=reason)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.reported:
            return
        if exc is None:
            self.report(self.tokens_used)
        else:
            self.fail(f"{type(exc).__name__}: {exc}"[:500], self.tokens_used or 0)


class Client:
    """Blocking client of a server's ``/api`` (seed 000's endpoints, with its field names)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        agent: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.agent = agent
        self.timeout_s = timeout_s

    # -- seed 000 --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self._call("GET", "/api/status")

    def choose(self, tokens_estimate: int = 1000) -> Lease:
        """``POST /api/choose``: the key with the most headroom, as a :class:`Lease`."""
        d = self._call("POST", "/api/choose", {"tokens_estimate": int(tokens_estimate)})
        return Lease(
            self,
            d["provider"],
            d["api_key"],
            d.get("key_id"),
            d.get("reservation_id"),
            d.get("remaining_after"),
            d.get("reason"),
            int(tokens_estimate),
            d,
        )

    def use(
        self,
        provider: str,
        tokens_used: int,
        success: bool = True,
        reason: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """``POST /api/use``: report usage of a provider (or of ``key_id``)."""
        return self._call(
            "POST",
            "/api/use",
            {
                "provider": provider,
                "tokens_used": tokens_used,
                "success": success,
                "reason": reason,
                **extra,
            },
        )

    def add_key(self, provider: str, api_key: str, quota_total: float) -> dict[str, Any]:
        return self._call(
            "POST",
            "/api/add_key",
            {"provider": provider, "api_key": api_key, "quota_total": quota_total},
        )

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/history?limit={int(limit)}").get("history", []))

    def force_provider(self, provider: str) -> dict[str, Any]:
        return self._call("POST", "/api/force_provider", {"provider": provider})

    def clear_forced(self) -> dict[str, Any]:
        return self._call("POST", "/api/clear_forced", {})

    def reset_quota(self, provider: str) -> dict[str, Any]:
        return self._call("POST", "/api/reset_quota", {"provider": provider})

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/api/health")

    # -- transport ---------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(HTTP status, parsed JSON)`` of one call, whatever the status; raises
        :class:`ClientError` (status 0) only when nothing answers at :attr:`url`."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("accept", "application/json")
        if data is not None:
            req.add_header("content-type", "application/json")
        if self.token:
            req.add_header("authorization", f"Bearer {self.token}")
        if self.agent:
            req.add_header("x-quotaflow-agent", self.agent)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ClientError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, _NotJson(raw[:200].decode("utf-8", "replace"))

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, parsed = self.request(method, path, body)
        if isinstance(parsed, _NotJson):
            raise ClientError(f"{method} {path}: not JSON (HTTP {status})", status)
        if parsed is None:
            parsed = {}
        if status >= 400 or (isinstance(parsed, dict) and parsed.get("success") is False):
            msg = parsed.get("message") if isinstance(parsed, dict) else None
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                msg = parsed["error"].get("message")
            raise ClientError(f"{method} {path}: {msg or f'HTTP {status}'}", status, parsed)
        return parsed if isinstance(parsed, dict) else {"data": parsed}


class _NotJson(str):
    """An answer that was not JSON: its first 200 characters."""
