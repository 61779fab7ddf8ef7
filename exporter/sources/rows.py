"""The shape every source hands to mapping: a header, then blocks of rows.

Rows travel in blocks (one per chunk read) rather than one by one, because a Python
async-generator step per row would cost more than mapping the row does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, NamedTuple, Sequence

from exporter.rejects import Reject
from exporter.sources.part_lines import PartLines

UNDECODABLE = "\udc80-\udcff"  # surrogateescape's range: bytes that were not UTF-8
FORMATS = ("csv", "jsonl", "parquet")  # what a segment's format may be forced to


class Damage(NamedTuple):
    """A sign that the file was not read as it was meant to be (a cut last line, a quoted
    field that swallowed lines): the rows still go on, but the read is no proof of who left
    the segment, so mirror mode removes nobody after it."""

    line: int
    reason: str


@dataclass(slots=True)
class RowBlock:
    """Consecutive rows with the source line number each one starts on.

    A CSV block of plain lines (no quotes, no blank lines) may come as its ``text`` instead,
    one row a line, not yet split into ``rows``, and a Parquet block as its record ``batch``:
    the columnar path reads either as a whole, and ``split_text`` gives the row path its rows."""

    lines: list[int]
    rows: list[Sequence[object]]
    has_undecodable: bool = False  # set when some row holds bytes that were not UTF-8
    rejects: list[Reject] = field(default_factory=list)  # lines the format itself refused
    damage: list[Damage] = field(default_factory=list)  # signs of a damaged read in these lines
    text: str = ""  # the rows' lines, each ending in "\n", when not yet split into ``rows``
    delimiter: str = ","  # of the lines in ``text``
    batch: Any = None  # a Parquet record batch of the rows, when not yet made Python ``rows``

    def split_text(self) -> RowBlock:
        """The block with its ``text`` split into ``rows`` (exactly as ``str.split`` would),
        or its ``batch`` made Python values."""
        if self.text:
            delimiter = self.delimiter
            self.rows = [line.split(delimiter) for line in self.text.split("\n")[:-1]]
            self.text = ""
        elif self.batch is not None:
            from exporter.sources.arrow_values import python_rows

            self.rows, self.batch = python_rows(self.batch), None
        return self


@dataclass(slots=True)
class Segment:
    """An opened segment: its column names and a one-shot stream of row blocks."""

    columns: list[str]
    blocks: AsyncIterator[RowBlock]
    description: str  # where the rows come from, safe to log and report
    bytes_read: int = 0  # of the file as stored, so far: with its size, how far the run has come
    part_lines: PartLines | None = None  # for a run of several part files
    size: int | None = None  # of the file(s) as stored, when known: to size the run's tables once
    rows: int | None = None  # as the file states it (Parquet's footer), when it does: sizes them better still
    column_types: dict[str, str] | None = None  # column -> type, as a CDM manifest states them


def first_undecodable_line(block: RowBlock) -> int:
    """The line of the block's first row holding undecodable bytes (0: none found)."""
    for line, row in zip(block.lines, block.rows, strict=False):
        if any(isinstance(value, str) and has_undecodable(value) for value in row):
            return line
    return 0


def has_undecodable(text: str) -> bool:
    """True if the text holds lone surrogates, i.e. bytes that were not valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
