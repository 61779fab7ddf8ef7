"""Rows that did not reach Klaviyo (or reached it without a field), and the CSV file that
lists them with their reasons.

The file holds line numbers, column names and reasons, never the row's values: it may be
shared more widely than the segment itself, and the line number finds the row.

Rejects arrive out of order (Klaviyo reports on a job long after later rows were read), but
a person reads the file top to bottom, so it is written in line order. Memory stays flat
on a bad segment: rejects are kept in sorted runs of at most ``RUN_SIZE`` on disk and
merged into the file when it closes. A segment read from several part files adds a
``file`` column, and each line is that file's own.
"""

from __future__ import annotations

import csv
import heapq
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable, Iterator, NamedTuple

from exporter.spreadsheet_safe import safe_row

if TYPE_CHECKING:
    from exporter.sources.part_lines import PartLines

RUN_SIZE = 50_000


class Reject(NamedTuple):
    line: int  # line the row starts on in the source (header is line 1)
    column: str  # the offending column, or "" when the whole row is at fault
    reason: str


class RejectsFile:
    HEADER = ("line", "column", "reason")

    def __init__(self, path: Path, always: bool = False):
        """``always``: create the file even when nothing is rejected (header only), so a
        script that named it can rely on it existing."""
        self.path = path
        self.always = always
        self.count = 0
        self._buffer: list[Reject] = []
        self._runs: list[IO[str]] = []
        self._closed = False
        self.parts: PartLines | None = None  # set when the segment has several part files

    def add(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            self._buffer.append(reject)
            self.count += 1
            if len(self._buffer) >= RUN_SIZE:
                self._spill()

    def _spill(self) -> None:
        run = tempfile.TemporaryFile("w+", newline="", encoding="utf-8")  # noqa: SIM115 (a run outlives this call)
        csv.writer(run).writerows(sorted(self._buffer))
        run.seek(0)
        self._runs.append(run)
        self._buffer = []

    def close(self) -> None:
        """Write the file, every reject in line order (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if not (self.count or self.always):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buffer.sort()
        runs = [_read(run) for run in self._runs]
        with self.path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            merged = heapq.merge(iter(self._buffer), *runs)
            if self.parts is None:
                writer.writerow(self.HEADER)
                writer.writerows(map(safe_row, merged))
            else:
                writer.writerow((*self.HEADER, "file"))
                writer.writerows(safe_row(_with_file(reject, self.parts)) for reject in merged)
        for run in self._runs:
            run.close()
        self._buffer, self._runs = [], []


def _with_file(reject: Reject, parts: PartLines) -> tuple[int, str, str, str]:
    label, line = parts.locate(reject.line)
    return line, reject.column, reject.reason, label


def _read(run: IO[str]) -> Iterator[Reject]:
    for line, column, reason in csv.reader(run):
        yield Reject(int(line), column, reason)
