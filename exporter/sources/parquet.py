"""Parquet segments (data-lake and warehouse exports), streamed by row group with pyarrow.

Parquet needs random access (its footer is at the end), so a blob is first streamed to a
temporary file (disk, never memory; pinned to the run's version like any blob read), then
read a batch at a time: memory holds one record batch, not the file. Values reach the
mapper as Python values; types JSON cannot carry (decimals, dates, timestamps, binary)
arrive as text. A row's "line" in the rejects file is its row number, counting from 1.

``pyarrow`` is imported here only, and this module only when a Parquet file is read, so
the HTTP, timer and blob-trigger functions never pay for it at cold start.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

from exporter.allocator import arrow_on_c_allocator
from exporter.errors import SourceError
from exporter.sources.arrow_values import python_rows
from exporter.sources.rows import RowBlock, Segment

PARQUET_MAGIC = b"PAR1"
BATCH_ROWS = 8_192


async def open_parquet(chunks: AsyncIterator[bytes], local_path: Path | None, name: str,
                       keep_batches: bool = False) -> Segment:
    """A Parquet segment from a local file (``local_path``) or a byte stream spooled to disk;
    ``keep_batches``: blocks carry their record batch (``RowBlock.batch``), for the columnar path."""
    import pyarrow.parquet as pq

    # One row group at a time on this thread (pyarrow's default decodes several ahead on
    # threads), from the C allocator: the two defaults cost ~50 MB here.
    arrow_on_c_allocator()
    spool = None
    if local_path is None:
        spool = tempfile.NamedTemporaryFile(prefix="segment-", suffix=".parquet")  # noqa: SIM115 (closed with the rows)
        async for chunk in chunks:
            spool.write(chunk)
        spool.flush()
        path = Path(spool.name)
    else:
        path = local_path
    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        if spool is not None:
            spool.close()
        raise SourceError(f"{name} is not a readable Parquet file ({exc.__class__.__name__})") from None
    columns = list(reader.schema_arrow.names)
    segment = Segment(columns, _blocks(reader, spool, keep_batches), name)
    segment.bytes_read = path.stat().st_size
    segment.rows = reader.metadata.num_rows  # the whole file is here already: no estimate from bytes read
    return segment


async def _blocks(reader: Any, spool: Any, keep_batches: bool) -> AsyncIterator[RowBlock]:
    try:
        row = 0
        for batch in reader.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            lines = list(range(row + 1, row + 1 + batch.num_rows))
            row += batch.num_rows
            yield RowBlock(lines, [], batch=batch) if keep_batches else RowBlock(lines, python_rows(batch))
    finally:
        if spool is not None:
            spool.close()


