"""Bytes -> text, incrementally: gzip when the data is gzip, UTF-8 with or without BOM.

Undecodable bytes are kept as lone surrogates (``surrogateescape``) instead of failing
the chunk: the row that holds them is rejected with its line number, the rest go on.
"""

from __future__ import annotations

import codecs
import zlib
from typing import AsyncGenerator, AsyncIterator

from exporter.errors import SourceError

GZIP_MAGIC = b"\x1f\x8b"


class _GzipInflater:
    """Inflates a gzip stream chunk by chunk, following concatenated members."""

    def __init__(self) -> None:
        self._member = zlib.decompressobj(wbits=31)

    def inflate(self, chunk: bytes) -> bytes:
        try:
            out = [self._member.decompress(chunk)]
            while self._member.eof and self._member.unused_data:
                rest = self._member.unused_data
                self._member = zlib.decompressobj(wbits=31)
                out.append(self._member.decompress(rest))
        except zlib.error as exc:
            raise SourceError(f"the gzip data is corrupt ({exc})") from None
        return b"".join(out)

    def finish(self) -> bytes:
        tail = self._member.flush()
        if not self._member.eof:
            raise SourceError("the gzip stream ends early: the file is truncated")
        return tail


async def decoded_text(chunks: AsyncIterator[bytes]) -> AsyncGenerator[str, None]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape")
    inflater: _GzipInflater | None = None
    first = True
    async for chunk in chunks:
        if first and chunk:
            first = False
            if chunk.startswith(GZIP_MAGIC):
                inflater = _GzipInflater()
        if inflater is not None:
            chunk = inflater.inflate(chunk)
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = inflater.finish() if inflater is not None else b""
    text = decoder.decode(tail, final=True)
    if text:
        yield text
