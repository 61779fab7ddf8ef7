"""Files built to hurt: a stray quote, a gzip bomb, one endless line, CR-only line endings.

Each must cost what it holds, not the rest of the file, and memory must stay flat: the
peak is measured with ``tracemalloc`` (Python's own allocations, which is where a
buffered line would live), never with a clock.
"""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from pathlib import Path

from exporter.sources import open_segment
from exporter.sources.csv_format import MAX_RECORD_LINES
from exporter.sources.lines import MAX_LINE_CHARS
from tests.conftest import write

MB = 1024 * 1024


async def read_counts(source: str) -> tuple[int, list[int], list]:
    """Rows, their line numbers and the rejects, holding nothing but the counts."""
    segment = await open_segment(source)
    rows, lines, rejects = 0, [], []
    async for block in segment.blocks:
        rows += len(block.rows)
        lines += block.lines
        rejects += block.rejects
    return rows, lines, rejects


async def peak_bytes_while_reading(source: str) -> tuple[int, tuple[int, list[int], list]]:
    tracemalloc.start()
    try:
        result = await read_counts(source)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def rows_text(count: int, start: int = 0) -> str:
    return "".join(f"u{i}@x.com,Name {i}\n" for i in range(start, start + count))


async def test_a_stray_quote_costs_one_row_not_the_rest_of_the_file(tmp_path: Path) -> None:
    text = "email,name\n" + rows_text(8) + 'u8@x.com,"Ann\n' + rows_text(20_000 - 9, start=9)
    rows, lines, rejects = await read_counts(write(tmp_path, "s.csv", text.encode()))
    assert rows == 19_999 and len(rejects) == 1
    assert rejects[0].line == 10 and rejects[0].reason.startswith("unclosed quote")
    assert lines[:9] == list(range(2, 11))[:8] + [11] and lines[-1] == 20_001


async def test_a_stray_quote_at_the_very_end_is_rejected_not_lost(tmp_path: Path) -> None:
    text = "email,name\n" + rows_text(3) + 'u3@x.com,"Ann\nu4@x.com,Bob\n'
    rows, lines, rejects = await read_counts(write(tmp_path, "s.csv", text.encode()))
    assert (rows, lines) == (4, [2, 3, 4, 6])
    assert [(r.line, r.reason.split(":")[0]) for r in rejects] == [(5, "unclosed quote")]


async def test_a_quoted_field_within_the_bound_still_spans_lines(tmp_path: Path) -> None:
    note = "\n".join(f"part {i}" for i in range(MAX_RECORD_LINES - 1))
    text = f'email,note\na@x.com,"{note}"\nb@x.com,plain\n'
    segment = await open_segment(write(tmp_path, "s.csv", text.encode()))
    blocks = [block async for block in segment.blocks]
    rows = [row for block in blocks for row in block.rows]
    assert rows == [["a@x.com", note], ["b@x.com", "plain"]]
    assert [line for block in blocks for line in block.lines] == [2, 2 + MAX_RECORD_LINES - 1]


async def test_a_gzip_bomb_of_one_endless_line_stays_flat_and_costs_one_row(tmp_path: Path) -> None:
    line = b"a" * (64 * MB)
    bomb = gzip.compress(b"email,name\n" + line + b"\nb@x.com,Bob\n", compresslevel=9)
    assert len(bomb) < 100_000
    peak, (rows, lines, rejects) = await peak_bytes_while_reading(write(tmp_path, "bomb.csv.gz", bomb))
    assert (rows, lines) == (1, [3])
    assert [(r.line, r.reason) for r in rejects] == [(2, f"row is longer than {MAX_LINE_CHARS:,} characters")]
    assert peak < 16 * MB, f"peak {peak / MB:.0f} MB while reading a 64 MB line"


async def test_a_single_deflate_block_is_inflated_in_pieces(tmp_path: Path) -> None:
    """One byte repeated compresses about 1000:1 in one member: the inflater must not expand
    it at once. (Zeros would be refused as binary before anything is inflated past a piece.)"""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = b"email\n" + b"a" * (200 * MB)
    bomb = packer.compress(body) + packer.flush()
    peak, (rows, _, rejects) = await peak_bytes_while_reading(write(tmp_path, "zeros.gz", bomb))
    assert rows == 0 and len(rejects) == 1
    assert peak < 16 * MB, f"peak {peak / MB:.0f} MB for a {len(bomb) // 1024} KB file"


async def test_cr_only_line_endings_are_line_ends_and_nothing_is_buffered_whole(tmp_path: Path) -> None:
    text = "email,name\r" + rows_text(300_000).replace("\n", "\r")
    assert len(text) > 6 * MB
    peak, (rows, lines, rejects) = await peak_bytes_while_reading(write(tmp_path, "mac.csv", text.encode()))
    assert rows == 300_000 and not rejects and lines[0] == 2 and lines[-1] == 300_001
    assert peak < 40 * MB, f"peak {peak / MB:.0f} MB for a {len(text) // MB} MB file"


async def test_crlf_split_between_two_chunks_is_one_line_end(tmp_path: Path) -> None:
    from exporter.sources.lines import LineSplitter

    splitter = LineSplitter()
    first, _ = splitter.feed("email\r")
    second, _ = splitter.feed("\na@x.com\r\nb@x.com\rc@x.com")
    last, _ = splitter.feed("", final=True)
    assert first + second + last == "email\na@x.com\nb@x.com\nc@x.com\n"


async def test_an_over_long_jsonl_line_is_rejected_and_the_next_one_read(tmp_path: Path) -> None:
    text = '{"email": "a@x.com"}\n{"email": "' + "x" * (MAX_LINE_CHARS + 10) + '"}\n{"email": "b@x.com"}\n'
    rows, lines, rejects = await read_counts(write(tmp_path, "s.jsonl", text.encode()))
    assert (rows, lines) == (2, [1, 3])
    assert [r.line for r in rejects] == [2]
