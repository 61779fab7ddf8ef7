"""CSV with a header row, parsed incrementally from text chunks.

A chunk boundary can fall inside a quoted field that spans lines, so each chunk is cut at
the last newline with an even number of quote characters before it (RFC 4180 quotes come
in pairs), and the rest waits for the next chunk. ``csv`` then does the real parsing.
"""

from __future__ import annotations

import csv
import io

from exporter.rejects import Reject
from exporter.sources.rows import RowBlock, has_undecodable

DELIMITERS = ",;\t|"
MAX_CARRY_CHARS = 32 * 1024 * 1024  # a stray quote must not make us buffer the whole file
csv.field_size_limit(MAX_CARRY_CHARS)


def detect_delimiter(header_line: str) -> str:
    """The candidate delimiter that occurs most often in the header (comma if none does)."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvParser:
    """Feed text chunks; get blocks of rows with their starting line numbers."""

    def __init__(self) -> None:
        self.columns: list[str] | None = None
        self._delimiter = ","
        self._carry = ""
        self._lines_done = 0  # physical lines fully consumed so far

    def feed(self, text: str, final: bool = False) -> RowBlock:
        buf = self._carry + text
        cut = len(buf) if final else _record_boundary(buf)
        if cut < 0 and len(buf) > MAX_CARRY_CHARS:
            cut = buf.rfind("\n") + 1
        if cut <= 0:
            self._carry = buf
            return RowBlock([], [])
        head, self._carry = buf[:cut], buf[cut:]
        return self._parse(head)

    def _parse(self, head: str) -> RowBlock:
        if self.columns is None:
            first_line = head.split("\n", 1)[0]
            self._delimiter = detect_delimiter(first_line)
        if '"' not in head:
            plain = head.replace("\r\n", "\n") if "\r" in head else head
            if "\r" not in plain:
                return self._parse_plain(plain)
        reader = csv.reader(io.StringIO(head, newline=""), delimiter=self._delimiter)
        block = RowBlock([], [], has_undecodable=has_undecodable(head))
        base = self._lines_done
        previous = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                block.rejects.append(Reject(base + previous + 1, "", f"malformed CSV: {exc}"))
                previous = reader.line_num
                continue
            start = base + previous + 1
            previous = reader.line_num
            if not row:
                continue  # blank line: not a row
            if self.columns is None:
                self.columns = [name.strip() for name in row]
                continue
            block.lines.append(start)
            block.rows.append(row)
        self._lines_done = base + reader.line_num
        return block


    def _parse_plain(self, head: str) -> RowBlock:
        """Text without quotes or bare CRs: ``str.split`` gives exactly what ``csv`` would,
        about four times faster, and most segment exports look like this."""
        block = RowBlock([], [], has_undecodable=has_undecodable(head))
        lines = head.split("\n")
        if head.endswith("\n"):
            lines.pop()
        delimiter, line = self._delimiter, self._lines_done
        for text in lines:
            line += 1
            if not text:
                continue  # blank line: not a row
            if self.columns is None:
                self.columns = [name.strip() for name in text.split(delimiter)]
                continue
            block.lines.append(line)
            block.rows.append(text.split(delimiter))
        self._lines_done = line
        return block


def _record_boundary(buf: str) -> int:
    """Index just past the last newline that ends a record, or -1 if none does yet."""
    quotes_after = 0
    end = len(buf)
    total = buf.count('"')
    pos = buf.rfind("\n")
    while pos >= 0:
        quotes_after += buf.count('"', pos, end)
        if (total - quotes_after) % 2 == 0:
            return pos + 1
        end = pos
        pos = buf.rfind("\n", 0, pos)
    return -1
