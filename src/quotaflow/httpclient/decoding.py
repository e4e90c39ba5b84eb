"""Content-Encoding of response bodies, decoded as they arrive and never past a cap.

A compressed body is inflated piece by piece with ``max_length``, so a small "bomb" that
would inflate to gigabytes stops at the client's body cap instead of first filling memory.
"deflate" is meant to be zlib-wrapped (RFC 9110) but some servers send it raw: both are
accepted, told apart by the first bytes. A body that ends before its compressed stream does
is reported as truncated, not passed on short.
"""

from __future__ import annotations

import zlib

STEP = 256 << 10  # output per inflate call: zlib builds it in blocks, then copies it once


class DecodeError(ValueError):
    """The body isn't what its Content-Encoding says (corrupt, truncated)."""


def _is_zlib_header(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


class Decoder:
    """One body's decompressor; ``decode`` never returns more than ``limit`` bytes."""

    __slots__ = ("_deflate", "_obj", "_pending", "_seen")

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._obj: zlib._Decompress | None = (
            None if self._deflate else zlib.decompressobj(16 + zlib.MAX_WBITS)
        )
        self._pending = b""  # deflate: the first byte, until the second tells zlib from raw
        self._seen = False  # any compressed byte at all

    def decode(self, data: bytes, limit: int) -> list[bytes]:
        """Inflate ``data`` into pieces (never joined: that would copy them all once more);
        over ``limit`` bytes of output raises :class:`OverflowError`."""
        if not data:
            return []
        self._seen = True
        obj = self._obj
        if obj is None:
            data = self._pending + data
            if len(data) < 2:
                self._pending = data
                return []
            self._pending = b""
            wbits = zlib.MAX_WBITS if _is_zlib_header(data) else -zlib.MAX_WBITS
            obj = self._obj = zlib.decompressobj(wbits)
        out: list[bytes] = []
        size = 0
        try:
            while data:
                piece = obj.decompress(data, STEP)
                size += len(piece)
                if size > limit:
                    raise OverflowError
                if piece:
                    out.append(piece)
                data = obj.unconsumed_tail
        except zlib.error as exc:
            raise DecodeError(f"undecodable body: {exc}") from None
        return out

    def finish(self) -> bytes:
        """What is left at the end of the body; a cut-off compressed stream raises."""
        if not self._seen:
            return b""  # an empty body (a HEAD-like answer, a 204) has nothing to decode
        obj = self._obj
        if obj is None or not obj.eof:
            raise DecodeError("the compressed body is truncated")
        return obj.flush()


def decoder_for(encoding: str) -> Decoder | None:
    """The decoder of a Content-Encoding header; ``ValueError`` for one we can't decode."""
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return Decoder("gzip")
    if enc == "deflate":
        return Decoder("deflate")
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")
