"""Text -> whole lines, with every line ending made ``\\n`` and no line held past a cap.

Both text formats parse line by line, so this is where a hostile file's shape is tamed
before any parser sees it:

- ``\\r\\n`` and a lone ``\\r`` (old Mac exports) end a line like ``\\n`` does, so a file
  without ``\\n`` is not buffered whole waiting for one;
- a last line without a line end is noted (``unterminated``): a file cut while it was
  written ends that way, and mirror mode must not take a cut file for the whole segment;
- a line longer than ``MAX_LINE_CHARS`` is rejected with its number and skipped to its
  end without being held: what it holds is dropped as it streams past, and a blank line
  takes its place so every later line keeps its number (parsers skip blank lines).
"""

from __future__ import annotations

from exporter.rejects import Reject

MAX_LINE_CHARS = 1024 * 1024


class LineSplitter:
    def __init__(self, max_line_chars: int = MAX_LINE_CHARS):
        self._max = max_line_chars
        self._carry = ""  # the start of a line whose end has not arrived yet
        self._skipping = False  # inside an over-long line: drop text until its end
        self._cr_pending = False  # the last piece ended in "\r": a "\n" next is part of it
        self._lines = 0  # line endings handed on so far
        self.unterminated = 0  # the number of a last line that had no line end (0: none)

    def feed(self, text: str, final: bool = False) -> tuple[str, list[Reject]]:
        """Whole lines (each ending in ``\\n``) and the rejects of over-long ones."""
        if self._cr_pending and text.startswith("\n"):
            text = text[1:]
        if text:
            self._cr_pending = text.endswith("\r")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        rejects: list[Reject] = []
        out: list[str] = []
        if self._skipping:
            end = text.find("\n")
            if end < 0 and not final:
                return "", rejects
            self._skipping = False
            out.append("\n")  # stands in for the skipped line
            text = text[end + 1:] if end >= 0 else ""
        cut = text.rfind("\n") + 1
        if cut:
            whole = self._carry + text[:cut]
            self._carry = text[cut:]
            out.append(self._capped(whole, self._handed_on(out), rejects) if len(whole) > self._max else whole)
        else:
            self._carry += text
        if len(self._carry) > self._max:
            rejects.append(Reject(self._handed_on(out) + 1, "", f"row is longer than {self._max:,} characters"))
            self._carry = ""
            if final:
                out.append("\n")
            else:
                self._skipping = True
        elif final and self._carry:
            if self._carry.strip():
                self.unterminated = self._handed_on(out) + 1
            out.append(self._carry + "\n")
            self._carry = ""
        joined = "".join(out)
        self._lines += joined.count("\n")
        return joined, rejects

    def _capped(self, whole: str, before: int, rejects: list[Reject]) -> str:
        """``whole`` with each over-long line emptied (a rare path: pieces are smaller than the cap)."""
        lines = whole.split("\n")
        for i, line in enumerate(lines):
            if len(line) > self._max:
                rejects.append(Reject(before + i + 1, "", f"row is longer than {self._max:,} characters"))
                lines[i] = ""
        return "\n".join(lines)

    def _handed_on(self, out: list[str]) -> int:
        """Line endings handed on so far, counting those about to be."""
        return self._lines + sum(piece.count("\n") for piece in out)
