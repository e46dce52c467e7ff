"""Request bodies sent compressed (``Content-Encoding: gzip`` or ``deflate``), decoded here.

aiohttp's parser can decode them, but a corrupt stream then surfaces in the handler as an
untyped payload error (a 500 with a traceback), a gzip stream cut short is taken for the whole
body (cut after its header it reads as empty, and a submit runs with default arguments), and
``br``/``zstd`` are refused by the parser as plain text. So create_app turns its decoding off
and every body is read through a decoder from ``body_decoder``: corrupt or truncated streams
are 400, codings other than gzip and deflate 415, all in the one error shape.
"""

from __future__ import annotations

import zlib

from aiohttp import hdrs, web

from sparkgate.jobs.errors import BadRequest, UnsupportedMediaType

DECODED = ("gzip", "x-gzip", "deflate")
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class Decoder:
    """Decompresses a body chunk by chunk, never more than a caller's budget at a time (a
    small bomb cannot inflate past the body limit in memory)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._z: zlib._Decompress | None = None

    def feed(self, data: bytes, budget: int) -> bytes:
        """Up to ``budget + 1`` decoded bytes of ``data`` (one more tells the caller it is over)."""
        out: list[bytes] = []
        size = 0
        while data and size <= budget:
            z = self._z or self._start(data)
            try:
                piece = z.decompress(data, budget + 1 - size)
            except zlib.error as exc:
                raise self._corrupt(f"the compressed data is corrupt ({exc})") from None
            out.append(piece)
            size += len(piece)
            data = z.unconsumed_tail
            if z.eof:
                data = self._next_member(z.unused_data + data)
        return b"".join(out)

    def finish(self) -> None:
        if self._z is None or not self._z.eof:
            raise self._corrupt("the compressed stream ends before its end marker (the body "
                                "was cut short)")

    def _start(self, data: bytes) -> zlib._Decompress:
        if self.coding == "deflate":
            # RFC 9110's deflate is zlib-wrapped; some clients send the raw stream.
            wbits = zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
        else:
            wbits = _GZIP_WBITS
        self._z = zlib.decompressobj(wbits)
        return self._z

    def _next_member(self, rest: bytes) -> bytes:
        if not rest:
            return b""
        if self.coding == "deflate":
            raise self._corrupt(f"{len(rest)} bytes follow the end of the compressed stream")
        self._z = None  # gzip allows several members one after another
        return rest

    def _corrupt(self, why: str) -> BadRequest:
        return BadRequest(f"request body: Content-Encoding {self.coding}: {why}",
                          {"field": "Content-Encoding", "got": self.coding})


class Identity(Decoder):
    def __init__(self) -> None:
        super().__init__("identity")

    def feed(self, data: bytes, budget: int) -> bytes:
        return data

    def finish(self) -> None:
        pass


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def body_decoder(request: web.Request) -> Decoder:
    codings = [c.strip().lower() for c in request.headers.get(hdrs.CONTENT_ENCODING, "").split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return Identity()
    if len(codings) > 1 or codings[0] not in DECODED:
        raise UnsupportedMediaType(
            f"request body: Content-Encoding {', '.join(codings)} is not accepted; send the body "
            "uncompressed, or compressed with gzip or deflate",
            {"field": "Content-Encoding", "expected": "gzip, deflate or none",
             "got": ", ".join(codings)})
    return Decoder(codings[0])


def refuse_encoded(request: web.Request, what: str) -> None:
    """For bodies read by a parser of their own (multipart uploads): only uncompressed."""
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if coding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"{what}: Content-Encoding {coding} is not accepted here; send it uncompressed",
            {"field": "Content-Encoding", "expected": "none", "got": coding})
