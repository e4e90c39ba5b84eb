"""Injected failures: what ``POST /_fake/faults`` queues and how a request picks one up.

A fault matches a request when its ``key`` and ``model`` are unset or equal to the
request's. The oldest matching fault wins; ``count`` says how many requests it hits
(``-1`` = until cleared).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

FaultKind = Literal[
    "status",
    "timeout",
    "cut_stream",
    "malformed",
    "reset_connection",
    "context_length",
    "content_filter",
    "redirect",
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "status",
    "timeout",
    "cut_stream",
    "malformed",
    "reset_connection",
    "context_length",
    "content_filter",
    "redirect",
)
FOREVER = -1
FAULT_FIELDS = ("kind", "key", "model", "status", "retry_after", "count", "after_chunks")


class FaultSpecError(ValueError):
    """A fault description that cannot be queued (the message says which field is wrong)."""


@dataclass(slots=True)
class Fault:
    """One queued failure; see :mod:`quotaflow.fake_provider.server` for what each kind does."""

    kind: FaultKind
    key: str | None = None
    model: str | None = None
    status: int = 500
    retry_after: float | None = None
    count: int = 1
    after_chunks: int = 0

    def matches(self, key: str | None, model: str | None) -> bool:
        """True when this fault applies to a request with ``key`` and ``model``."""
        return (self.key is None or self.key == key) and (self.model is None or self.model == model)

    def to_json(self) -> dict[str, Any]:
        """The fault as the control API shows it."""
        return asdict(self)


def _opt(spec: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = spec.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise FaultSpecError(f"{name!r} has the wrong type: {value!r}")
    return value


def fault_from_json(spec: Any) -> Fault:
    """Build a :class:`Fault` from the control API's JSON, validating every field."""
    if not isinstance(spec, dict):
        raise FaultSpecError("the body must be a JSON object")
    unknown = sorted(set(spec) - set(FAULT_FIELDS))
    if unknown:
        raise FaultSpecError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(FAULT_FIELDS)}"
        )
    kind = spec.get("kind", "status")
    if kind not in FAULT_KINDS:
        raise FaultSpecError(f"'kind' must be one of {', '.join(FAULT_KINDS)}")
    status = _opt(spec, "status", int)
    if kind == "redirect":
        status = 302 if status is None else status
        if not 300 <= status <= 399:
            raise FaultSpecError("a redirect's 'status' must be a 3xx (300-399)")
    elif status is not None and not 400 <= status <= 599:
        raise FaultSpecError("'status' must be an HTTP error status (400-599)")
    retry_after = _opt(spec, "retry_after", (int, float))
    count = _opt(spec, "count", int)
    if count is not None and count != FOREVER and count < 1:
        raise FaultSpecError("'count' must be >= 1, or -1 for 'until cleared'")
    after_chunks = _opt(spec, "after_chunks", int)
    if after_chunks is not None and after_chunks < 0:
        raise FaultSpecError("'after_chunks' must be >= 0")
    if retry_after is not None and retry_after < 0:
        raise FaultSpecError("'retry_after' must be >= 0")
    return Fault(
        kind=cast(FaultKind, kind),
        key=_opt(spec, "key", str),
        model=_opt(spec, "model", str),
        status=500 if status is None else status,
        retry_after=None if retry_after is None else float(retry_after),
        count=1 if count is None else count,
        after_chunks=0 if after_chunks is None else after_chunks,
    )


class FaultQueue:
    """The queued faults, oldest first."""

    __slots__ = ("faults",)

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def __bool__(self) -> bool:
        return bool(self.faults)

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind the existing ones."""
        self.faults.append(fault)

    def clear(self) -> None:
        """Drop every queued fault."""
        self.faults.clear()

    def take(self, key: str | None, model: str | None) -> Fault | None:
        """The fault for this request, if any, using up one of its ``count``."""
        for i, fault in enumerate(self.faults):
            if fault.matches(key, model):
                if fault.count != FOREVER:
                    fault.count -= 1
                    if fault.count == 0:
                        del self.faults[i]
                return fault
        return None
