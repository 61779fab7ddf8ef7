"""Whether a run read its whole segment undamaged: the proof mirror mode needs before it
removes anyone.

A row the format refused (an over-long line, a stray quote, a line that is not JSON), a
record that swallowed the lines after it, bytes that are not text in the file's encoding,
a last line cut off without its line end: each of these means some people of the segment
may not have been read as who they are, so a member missing from this read is no proof of
having left it. The rows still go to Klaviyo as usual; only removals wait for a clean read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from exporter.sources.rows import RowBlock, first_undecodable_line

EXAMPLES = 3  # signs named in the report; the rest are counted


@dataclass
class ReadIntegrity:
    problems: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, where: str, reason: str) -> None:
        self.problems += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    def inspect(self, block: RowBlock, where: Callable[[int], str], encoding: str) -> None:
        """Note the block's signs of damage (called before the block is mapped)."""
        for reject in block.rejects:
            self.note(where(reject.line), reject.reason)
        for damage in block.damage:
            self.note(where(damage.line), damage.reason)
        if block.has_undecodable:
            self.note(where(first_undecodable_line(block)), f"bytes that are not valid {encoding}")

    @property
    def whole(self) -> bool:
        return not self.problems

    def why(self) -> str:
        more = f" (and {self.problems - len(self.examples):,} more)" if self.problems > len(self.examples) else ""
        return "; ".join(self.examples) + more
