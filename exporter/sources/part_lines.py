"""Where a line of a segment read from several part files comes from.

Kept apart from the row and reject types (it needs neither), so the rejects file can name
part files without importing the sources that read them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class PartLines:
    """A run of several part files numbers its lines on from one part to the next; this maps
    such a line back to (part file, its own line) for the rejects file."""

    starts: list[int] = field(default_factory=list)  # lines of the parts before each part
    labels: list[str] = field(default_factory=list)

    def locate(self, line: int) -> tuple[str, int]:
        if line <= 0 or not self.starts:
            return "", line
        i = bisect.bisect_left(self.starts, line) - 1
        return self.labels[i], line - self.starts[i]

    def describe(self, line: int) -> str:
        label, own = self.locate(line)
        return f"line {own} of {label}" if label else f"line {own}"
