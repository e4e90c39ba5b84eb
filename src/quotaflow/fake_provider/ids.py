"""Response and request ids in each provider's style, from a seeded ``random.Random``."""

from __future__ import annotations

import random
import string

_ALNUM = string.ascii_letters + string.digits
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_URLSAFE = _ALNUM + "-_"


def _byte_table(alphabet: str) -> bytes:
    """A ``bytes.translate`` table sending every byte to a character of ``alphabet``."""
    return bytes(ord(alphabet[b % len(alphabet)]) for b in range(256))


# Random bytes translated through these tables are ids at C speed (ids are made on every
# request of the benchmarks' hot path); the slight modulo bias does not matter here.
_TABLES = {alphabet: _byte_table(alphabet) for alphabet in (_ALNUM, _BASE58, _URLSAFE)}


class IdMaker:
    """Makes ids that look like the real ones; the same seed gives the same sequence."""

    __slots__ = ("_rng",)

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Restart the sequence from ``seed``."""
        self._rng.seed(seed)

    def _chars(self, alphabet: str, n: int) -> str:
        return self._rng.randbytes(n).translate(_TABLES[alphabet]).decode("ascii")

    def hex(self, n: int) -> str:
        """``n`` lowercase hex digits."""
        return f"{self._rng.getrandbits(4 * n):0{n}x}"

    def openai_completion(self) -> str:
        """``chatcmpl-`` + 29 alphanumerics."""
        return "chatcmpl-" + self._chars(_ALNUM, 29)

    def openai_tool_call(self) -> str:
        """``call_`` + 24 alphanumerics."""
        return "call_" + self._chars(_ALNUM, 24)

    def openai_request(self) -> str:
        """``req_`` + 32 hex digits (the ``x-request-id`` header)."""
        return "req_" + self.hex(32)

    def anthropic_message(self) -> str:
        """``msg_01`` + 22 base58 characters."""
        return "msg_01" + self._chars(_BASE58, 22)

    def anthropic_tool_use(self) -> str:
        """``toolu_01`` + 22 base58 characters."""
        return "toolu_01" + self._chars(_BASE58, 22)

    def anthropic_request(self) -> str:
        """``req_011C`` + 20 base58 characters (the ``request-id`` header)."""
        return "req_011C" + self._chars(_BASE58, 20)

    def gemini_response(self) -> str:
        """A 23-character URL-safe ``responseId``."""
        return self._chars(_URLSAFE, 23)
