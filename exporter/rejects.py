"""Rows that did not reach Klaviyo, and the CSV file that lists them with their reasons.

The file holds line numbers, column names and reasons, never the row's values: it may be
shared more widely than the segment itself, and the line number finds the row.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, NamedTuple, TextIO


class Reject(NamedTuple):
    line: int  # line the row starts on in the source (header is line 1)
    column: str  # the offending column, or "" when the whole row is at fault
    reason: str


class RejectsFile:
    """Appends rejects to a CSV as they happen, so memory stays flat on a bad segment."""

    HEADER = ("line", "column", "reason")

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._file: TextIO | None = None

    def add(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("w", newline="", encoding="utf-8")
                self._writer = csv.writer(self._file)
                self._writer.writerow(self.HEADER)
            self._writer.writerow(reject)
            self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
