"""Durations as people read them: ``19h 46m``, never ``71193s``."""

from __future__ import annotations

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def human_duration(seconds: float) -> str:
    """The two largest units of ``seconds``: ``45s``, ``3m 20s``, ``19h 46m``, ``2d 4h``.

    Under a second reads ``<1s``; a fraction is rounded up so "retry in 1s" never says 0.
    """
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return "<1s"
    whole = int(-(-seconds // 1))
    parts: list[str] = []
    for unit, size in _UNITS:
        n, whole = divmod(whole, size)
        if n or parts:
            parts.append(f"{n}{unit}")
        if len(parts) == 2:
            break
    if len(parts) == 2 and parts[1].startswith("0"):
        parts.pop()
    return " ".join(parts)
