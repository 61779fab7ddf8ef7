"""Sources: open a segment (local path or blob; CSV or JSON Lines, either gzipped, in any
text encoding Python knows).

The format is what the caller forces, else what the name says (``.jsonl``, ``.ndjson``),
else what the content says: a first non-blank character ``{`` is JSON Lines, anything else
CSV. So a gzipped JSON Lines file named ``export.gz`` is read as what it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator, Protocol

from exporter.errors import SourceError
from exporter.sources.csv_format import CsvParser
from exporter.sources.files import BlobLocation, blob_chunks, is_blob_url, local_chunks, redact_url
from exporter.sources.jsonl_format import JsonlParser
from exporter.sources.lines import LineSplitter
from exporter.sources.parquet import PARQUET_MAGIC
from exporter.sources.rows import FORMATS, Damage, RowBlock, Segment
from exporter.sources.text import decoded_text

__all__ = ["FORMATS", "BlobLocation", "RowBlock", "Segment", "open_segment", "is_blob_url"]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


class _Parser(Protocol):
    columns: list[str] | None

    def feed(self, text: str, final: bool = False) -> RowBlock: ...


async def open_segment(source: str | BlobLocation, credential: Any = None, *, encoding: str = "utf-8",
                       format: str | None = None, columns: list[str] | None = None,
                       delimiter: str | None = None, keep_text: bool = False, quoted: bool = True) -> Segment:
    """Open a segment and read its header; the rows stream as the blocks are consumed.
    ``columns`` names the columns of a CSV without a header row (its first line is data);
    ``delimiter`` is a CSV's delimiter when something (a CDM manifest) states it;
    ``keep_text``: plain CSV lines come as unsplit text (``RowBlock.text``), Parquet rows as
    their record batch (``RowBlock.batch``), for the columnar path; ``quoted``: quotes enclose CSV
    fields (False: a quote is a plain character, as a CDM manifest's QuoteStyle.None says)."""
    local: Path | None = None
    sizes: list[int] = []  # the file's size as stored, once its stream knows it
    if isinstance(source, BlobLocation):
        chunks, name = blob_chunks(source, on_size=sizes.append), source.description
    elif is_blob_url(source):
        chunks, name = blob_chunks(source, credential, on_size=sizes.append), redact_url(source)
    else:
        local = Path(source)
        chunks, name = local_chunks(local, on_size=sizes.append), source
    counted = _Counted(chunks)
    stream = counted.chunks()
    head = await _first_chunk(stream)
    if format == "parquet" or (format is None and (name.lower().endswith(".parquet") or head.startswith(PARQUET_MAGIC))):
        from exporter.sources.parquet import open_parquet  # pyarrow only for Parquet files

        parquet = await open_parquet(_chain([head], stream), local, name, keep_text)
        parquet.size = sizes[0] if sizes else None
        return parquet
    texts = decoded_text(_chain([head], stream), encoding)
    start = await _first_text(texts)
    if format is None:
        jsonl = name.lower().endswith(JSONL_SUFFIXES) or start.lstrip().startswith("{")
        format = "jsonl" if jsonl else "csv"
    parser: _Parser = JsonlParser(columns) if format == "jsonl" else CsvParser(columns, delimiter, keep_text, quoted)
    blocks = _blocks(_chain([start], texts), LineSplitter(), parser)
    first: list[RowBlock] = []
    async for block in blocks:
        first.append(block)
        if parser.columns is not None:
            break
    else:
        if parser.columns is None:
            raise SourceError(f"{name} is empty: no header row (CSV) or object (JSON Lines) found")
    segment = Segment(parser.columns, _chain(first, blocks), name, size=sizes[0] if sizes else None)
    counted.segment = segment
    segment.bytes_read = counted.total
    return segment


class _Counted:
    """Counts the bytes a segment's stream has delivered, onto the segment once it exists."""

    def __init__(self, chunks: AsyncIterator[bytes]):
        self._chunks = chunks
        self.total = 0
        self.segment: Segment | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.total += len(chunk)
            if self.segment is not None:
                self.segment.bytes_read = self.total
            yield chunk


async def _first_text(texts: AsyncGenerator[str, None]) -> str:
    """The text up to its first non-blank character (or all of it, if that is blank)."""
    pieces: list[str] = []
    async for text in texts:
        pieces.append(text)
        if text.strip():
            break
    return "".join(pieces)


async def _first_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    async for chunk in chunks:
        if chunk:
            return chunk
    return b""


async def _chain(first: list[Any], rest: Any) -> Any:
    """What was already read to look at the file (bytes, text or row blocks), then the rest of
    its stream, which is closed with this one."""
    try:
        for piece in first:
            yield piece
        async for piece in rest:
            yield piece
    finally:
        await rest.aclose()


async def _blocks(texts: AsyncGenerator[str, None], splitter: LineSplitter, parser: _Parser) -> AsyncGenerator[RowBlock, None]:
    """Whole lines to the parser, with the splitter's rejects (over-long lines) in each block."""
    try:
        async for text in texts:
            lines, rejects = splitter.feed(text)
            block = parser.feed(lines)
            block.rejects[:0] = rejects
            yield block
        lines, rejects = splitter.feed("", final=True)
        block = parser.feed(lines, final=True)
        block.rejects[:0] = rejects
        if splitter.unterminated:
            block.damage.append(Damage(splitter.unterminated, "the file's last line has no line end, so the file may "
                                                              "have been cut while it was written"))
        yield block
    finally:
        await texts.aclose()

