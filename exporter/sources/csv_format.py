"""CSV with a header row, parsed incrementally from whole lines.

A quoted field may span lines, so lines are grouped into records by quote parity (RFC
4180 quotes come in pairs) before ``csv`` does the real parsing. A record whose quote is
still open after ``MAX_RECORD_LINES`` lines or ``MAX_LINE_CHARS`` characters is taken
for a stray quote: its first line is rejected as "unclosed quote" and reading resumes on
the next line, so one bad row costs one row, and every line is looked at a bounded
number of times (parsing stays linear).
"""

from __future__ import annotations

import csv
import io

from exporter.rejects import Reject
from exporter.sources.lines import MAX_LINE_CHARS
from exporter.sources.rows import Damage, RowBlock, has_undecodable

DELIMITERS = ",;\t|"
MAX_RECORD_LINES = 100  # a quoted field (an address, a note) may span this many lines
csv.field_size_limit(2 * MAX_LINE_CHARS)  # lines are capped upstream; this is a backstop


def detect_delimiter(header_line: str) -> str:
    """The candidate delimiter that occurs most often in the header (comma if none does)."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def unclosed_quote(line: int) -> Reject:
    return Reject(line, "", f"unclosed quote: a quoted field runs past {MAX_RECORD_LINES} lines "
                            f"or {MAX_LINE_CHARS:,} characters; the row is skipped")


class CsvParser:
    """Feed whole lines (``LineSplitter``'s output); get blocks of rows with their line numbers."""

    def __init__(self, columns: list[str] | None = None, delimiter: str | None = None, keep_text: bool = False,
                 quoted: bool = True) -> None:
        """``columns``: the names of a file without a header row (its first line is data);
        ``delimiter``: as a manifest states it (else detected from the first line);
        ``keep_text``: hand plain lines on as text, unsplit, for the columnar path;
        ``quoted``: quotes enclose fields (False: every line is split at its delimiters)."""
        self.columns: list[str] | None = columns
        self._delimiter: str | None = delimiter
        self._keep_text = keep_text
        self._quoted = quoted
        self._carry: list[str] = []  # the lines of a record whose quote is still open
        self._lines_done = 0  # physical lines fully consumed so far

    def feed(self, text: str, final: bool = False) -> RowBlock:
        plain = '"' not in text
        if not self._carry and (plain or not self._quoted):
            if plain and self._keep_text and self.columns is not None and self._delimiter and _no_blank_lines(text) \
                    and not has_undecodable(text):
                first = self._lines_done + 1
                self._lines_done += text.count("\n")
                return RowBlock(list(range(first, self._lines_done + 1)), [], text=text, delimiter=self._delimiter)
            return self._parse_plain(text)
        carried = "\n".join(self._carry)
        lines = self._carry + text.split("\n")
        lines.pop()  # whole lines: the text ends in "\n", so the last piece is empty
        self._carry = []
        block = RowBlock([], [], has_undecodable=has_undecodable(text) or has_undecodable(carried))
        self._records(lines, final, block)
        return block

    def _records(self, lines: list[str], final: bool, block: RowBlock) -> None:
        """Hand runs of complete records to ``csv``; reject stray quotes; keep an open tail."""
        run_start = 0  # first line of the run not yet parsed
        record_start, record_chars, open_quote = 0, 0, False
        i, count = 0, len(lines)
        while True:
            while i < count:
                line = lines[i]
                if not open_quote:
                    record_start, record_chars = i, 0
                record_chars += len(line) + 1
                if line.count('"') & 1:
                    open_quote = not open_quote
                i += 1
                if open_quote and (i - record_start >= MAX_RECORD_LINES or record_chars > MAX_LINE_CHARS):
                    break
            if not open_quote:
                self._parse_run(lines[run_start:count], block)
                return
            if i < count or final:  # a stray quote: skip its line and read on from the next one
                self._parse_run(lines[run_start:record_start], block)
                self._lines_done += 1
                block.rejects.append(unclosed_quote(self._lines_done))
                run_start = i = record_start + 1
                open_quote = False
                continue
            self._parse_run(lines[run_start:record_start], block)  # the rest may close in the next piece
            self._carry = lines[record_start:]
            return

    def _parse_run(self, lines: list[str], block: RowBlock) -> None:
        if not lines:
            return
        if self._delimiter is None:
            self._delimiter = detect_delimiter(_first_nonblank(lines))
        reader = csv.reader(io.StringIO("\n".join(lines) + "\n", newline=""), delimiter=self._delimiter)
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
            span = reader.line_num - previous
            if span > 1 and self.columns is not None:
                self._check_spanning(row, lines[previous:reader.line_num], start, block)
            previous = reader.line_num
            if not row:
                continue  # blank line: not a row
            if self.columns is None:
                self.columns = [name.strip() for name in row]
                continue
            block.lines.append(start)
            block.rows.append(row)
        self._lines_done = base + len(lines)

    def _check_spanning(self, row: list[str], lines: list[str], start: int, block: RowBlock) -> None:
        """A record over several lines is an address or a note, or a stray quote that swallowed
        the lines after it. Only a record that is well-formed (every quote closes a field) and
        as wide as the header is taken for the first; anything else is damage."""
        assert self.columns is not None and self._delimiter is not None
        problem = ""
        if len(row) != len(self.columns):
            problem = f"has {len(row)} fields where the header has {len(self.columns)}"
        else:
            try:
                for _ in csv.reader(io.StringIO("\n".join(lines) + "\n", newline=""), delimiter=self._delimiter,
                                    strict=True):
                    pass
            except csv.Error:
                problem = "has a quote in the middle of a field"
        if problem:
            block.damage.append(Damage(start, f"a quoted field runs over {len(lines)} lines and the record {problem}: "
                                              "a stray quote may have swallowed rows"))

    def _parse_plain(self, text: str) -> RowBlock:
        """Lines without quotes: ``str.split`` gives exactly what ``csv`` would, about four
        times faster, and most segment exports look like this."""
        block = RowBlock([], [], has_undecodable=has_undecodable(text))
        lines = text.split("\n")
        lines.pop()
        if self._delimiter is None and any(lines):
            self._delimiter = detect_delimiter(_first_nonblank(lines))
        delimiter, line = self._delimiter or ",", self._lines_done
        for row in lines:
            line += 1
            if not row:
                continue  # blank line: not a row
            if self.columns is None:
                self.columns = [name.strip() for name in row.split(delimiter)]
                continue
            block.lines.append(line)
            block.rows.append(row.split(delimiter))
        self._lines_done = line
        return block


def _no_blank_lines(text: str) -> bool:
    return bool(text) and not text.startswith("\n") and "\n\n" not in text


def _first_nonblank(lines: list[str]) -> str:
    return next((line for line in lines if line), "")
