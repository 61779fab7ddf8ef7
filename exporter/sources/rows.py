"""The shape every source hands to mapping: a header, then blocks of rows.

Rows travel in blocks (one per chunk read) rather than one by one, because a Python
async-generator step per row would cost more than mapping the row does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence

from exporter.rejects import Reject

UNDECODABLE = "\udc80-\udcff"  # surrogateescape's range: bytes that were not UTF-8
FORMATS = ("csv", "jsonl", "parquet")  # what a segment's format may be forced to


@dataclass(slots=True)
class RowBlock:
    """Consecutive rows with the source line number each one starts on."""

    lines: list[int]
    rows: list[Sequence[object]]
    has_undecodable: bool = False  # set when some row holds bytes that were not UTF-8
    rejects: list[Reject] = field(default_factory=list)  # lines the format itself refused


@dataclass(slots=True)
class Segment:
    """An opened segment: its column names and a one-shot stream of row blocks."""

    columns: list[str]
    blocks: AsyncIterator[RowBlock]
    description: str  # where the rows come from, safe to log and report
    bytes_read: int = 0  # of the file as stored, so far: with its size, how far the run has come


def has_undecodable(text: str) -> bool:
    """True if the text holds lone surrogates, i.e. bytes that were not valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
