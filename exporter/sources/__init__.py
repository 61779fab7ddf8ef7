"""Sources: open a segment (local path or blob URL; CSV, JSON Lines, either gzipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator, Protocol

from exporter.errors import SourceError
from exporter.sources.csv_format import CsvParser
from exporter.sources.files import BlobLocation, blob_chunks, is_blob_url, local_chunks, redact_url
from exporter.sources.jsonl_format import JsonlParser
from exporter.sources.lines import LineSplitter
from exporter.sources.rows import RowBlock, Segment
from exporter.sources.text import decoded_text

__all__ = ["BlobLocation", "RowBlock", "Segment", "open_segment", "is_blob_url"]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


class _Parser(Protocol):
    columns: list[str] | None

    def feed(self, text: str, final: bool = False) -> RowBlock: ...


async def open_segment(source: str | BlobLocation, credential: Any = None) -> Segment:
    """Open a segment and read its header; the rows stream as the blocks are consumed."""
    if isinstance(source, BlobLocation):
        chunks, name = blob_chunks(source), source.description
    elif is_blob_url(source):
        chunks, name = blob_chunks(source, credential), redact_url(source)
    else:
        chunks, name = local_chunks(Path(source)), source
    parser: _Parser = JsonlParser() if name.lower().endswith(JSONL_SUFFIXES) else CsvParser()
    blocks = _blocks(decoded_text(chunks), LineSplitter(), parser)
    first: list[RowBlock] = []
    async for block in blocks:
        first.append(block)
        if parser.columns is not None:
            break
    else:
        if parser.columns is None:
            raise SourceError(f"{name} is empty: no header row (CSV) or object (JSON Lines) found")
    return Segment(parser.columns, _replay(first, blocks), name)


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
        yield block
    finally:
        await texts.aclose()


async def _replay(first: list[RowBlock], rest: AsyncGenerator[RowBlock, None]) -> AsyncIterator[RowBlock]:
    for block in first:
        yield block
    async for block in rest:
        yield block
