"""Sources: open a segment (local path or blob URL; CSV, JSON Lines, either gzipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator, Protocol

from exporter.errors import SourceError
from exporter.sources.csv_format import CsvParser
from exporter.sources.files import blob_chunks, is_blob_url, local_chunks, redact_url
from exporter.sources.jsonl_format import JsonlParser
from exporter.sources.rows import RowBlock, Segment
from exporter.sources.text import decoded_text

__all__ = ["RowBlock", "Segment", "open_segment", "is_blob_url"]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


class _Parser(Protocol):
    columns: list[str] | None

    def feed(self, text: str, final: bool = False) -> RowBlock: ...


async def open_segment(source: str, credential: Any = None) -> Segment:
    """Open a segment and read its header; the rows stream as the blocks are consumed."""
    if is_blob_url(source):
        chunks = blob_chunks(source, credential)
        name = redact_url(source)
    else:
        chunks = local_chunks(Path(source))
        name = source
    parser: _Parser = JsonlParser() if name.lower().split("?")[0].endswith(JSONL_SUFFIXES) else CsvParser()
    texts = decoded_text(chunks)
    first: list[RowBlock] = []
    async for text in texts:
        first.append(parser.feed(text))
        if parser.columns is not None:
            break
    else:
        first.append(parser.feed("", final=True))
        if parser.columns is None:
            await texts.aclose()
            raise SourceError(f"{name} is empty: no header row (CSV) or object (JSON Lines) found")
        return Segment(parser.columns, _replay(first, None, parser), name)
    return Segment(parser.columns, _replay(first, texts, parser), name)


async def _replay(first: list[RowBlock], texts: AsyncGenerator[str, None] | None, parser: _Parser) -> AsyncIterator[RowBlock]:
    for block in first:
        yield block
    if texts is None:
        return
    async for text in texts:
        yield parser.feed(text)
    yield parser.feed("", final=True)
