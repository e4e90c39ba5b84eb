"""Counts as people read them: "1 key", "2 keys"."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, with an ``s`` unless ``n`` is 1 (regular English plurals only)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
