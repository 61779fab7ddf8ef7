"""Bytes -> text, incrementally: gzip when the data is gzip, UTF-8 with or without BOM by
default, or any encoding Python knows (``cp1252`` for Excel's exports, ``latin-1``, ...).

Undecodable bytes are kept as lone surrogates (``surrogateescape``) instead of failing
the chunk: the row that holds them is rejected with its line number, the rest go on.

Inflating is bounded: a few kilobytes of gzip can expand to gigabytes (a "gzip bomb"),
so each compressed chunk is inflated in pieces of at most ``INFLATE_PIECE`` bytes and
each piece is handed on before the next is made. Memory stays one piece deep whatever
the compression ratio.
"""

from __future__ import annotations

import codecs
import zlib
from typing import AsyncGenerator, AsyncIterator, Iterator

from exporter.errors import SourceError
from exporter.sources.sniff import encoding_from_mark, refuse_binary

GZIP_MAGIC = b"\x1f\x8b"
INFLATE_PIECE = 256 * 1024


class _GzipInflater:
    """Inflates a gzip stream chunk by chunk, following concatenated members."""

    def __init__(self) -> None:
        self._member = zlib.decompressobj(wbits=31)

    def inflate(self, chunk: bytes) -> Iterator[bytes]:
        """Yield the inflated bytes of ``chunk`` in pieces of at most ``INFLATE_PIECE``."""
        pending = chunk
        try:
            while pending:
                piece = self._member.decompress(pending, INFLATE_PIECE)
                if piece:
                    yield piece
                if self._member.unconsumed_tail:
                    pending = self._member.unconsumed_tail
                elif self._member.eof and self._member.unused_data:
                    pending = self._member.unused_data  # the next member of a concatenated gzip
                    self._member = zlib.decompressobj(wbits=31)
                else:
                    pending = b""
        except zlib.error as exc:
            raise SourceError(f"the gzip data is corrupt ({exc})") from None

    def finish(self) -> bytes:
        tail = self._member.flush()
        if not self._member.eof:
            raise SourceError("the gzip stream ends early: the file is truncated")
        return tail


def text_decoder(encoding: str) -> codecs.IncrementalDecoder:
    """An incremental decoder for ``encoding`` (any codec Python knows; UTF-8 drops a BOM)
    that keeps undecodable bytes as lone surrogates, so their rows can be rejected by line."""
    name = codecs.lookup(encoding).name
    return codecs.getincrementaldecoder("utf-8-sig" if name == "utf-8" else name)(errors="surrogateescape")


async def decoded_text(chunks: AsyncIterator[bytes], encoding: str = "utf-8") -> AsyncGenerator[str, None]:
    """The text of a file (inflated first if it is gzip). Its first bytes are looked at once:
    a byte-order mark picks UTF-16 or UTF-32, and a file that is not text is refused by name."""
    decoder: codecs.IncrementalDecoder | None = None
    inflater: _GzipInflater | None = None
    first = True
    async for chunk in chunks:
        if first and chunk:
            first = False
            if chunk.startswith(GZIP_MAGIC):
                inflater = _GzipInflater()
        pieces = inflater.inflate(chunk) if inflater is not None else (chunk,)
        for piece in pieces:
            if decoder is None:
                if not piece:
                    continue
                encoding = encoding_from_mark(piece, encoding)
                refuse_binary(piece, encoding)
                decoder = text_decoder(encoding)
            text = decoder.decode(piece)
            if text:
                yield text
    if decoder is None:
        decoder = text_decoder(encoding)
    tail = inflater.finish() if inflater is not None else b""
    text = decoder.decode(tail, final=True)
    if text:
        yield text
