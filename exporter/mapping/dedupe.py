"""Drops a second row for an email already seen in this run, remembering where it was first.

Only a 64-bit key of each lower-cased email is kept (``sync.keys.email_key``), in an open-addressing table of
machine words, with the line it was first seen on beside it (so a duplicate can be
reported as "duplicate of line N"): 12 bytes a slot, at most 5/8 full (19-38 bytes an
address; sized once from the segment's expected rows when known), where a Python ``set``
of ints costs ~100. Two different addresses share a hash with odds near 1 in 10^7 per
million-row run; the second would be counted as a duplicate, never dropped without a count.
"""

from __future__ import annotations

from array import array
from typing import Sequence

_EMPTY = 0
MAX_LOAD_EIGHTHS = 5  # grown past 5/8 full: ~4 probes for a new key, under 2 for a known one


class Deduplicator:
    def __init__(self, capacity: int = 1 << 16):
        self._slots = array("q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        self._mask = capacity - 1
        self._count = 0

    def reserve(self, count: int) -> None:
        """Room for ``count`` keys without growing (an empty table only: no rehash needed)."""
        capacity = len(self._slots)
        while capacity * MAX_LOAD_EIGHTHS < 8 * count + 8:
            capacity *= 2
        if capacity > len(self._slots) and self._count == 0:
            self._slots = array("q", bytes(8 * capacity))
            self._lines = array("I", bytes(4 * capacity))
            self._mask = capacity - 1

    def unique(self, hashes: Sequence[int], lines: Sequence[int]) -> tuple[list[int], list[tuple[int, int]]]:
        """Positions of the hashes not seen before (in this call or an earlier one), and for
        each other position the line its email was first seen on."""
        keep: list[int] = []
        seen: list[tuple[int, int]] = []
        insert = self.insert
        for i, key in enumerate(hashes):
            first = insert(key or 1, lines[i])
            if first:
                seen.append((i, first))
            else:
                keep.append(i)
        return keep, seen

    def insert(self, key: int, line: int) -> int:
        """Add ``key`` first seen on ``line``; 0 if new, else the line it was first seen on.
        Linear probing, grown past 5/8 full."""
        slots, mask = self._slots, self._mask
        i = key & mask
        while True:
            held = slots[i]
            if held == _EMPTY:
                break
            if held == key:
                return self._lines[i] or 1
            i = (i + 1) & mask
        slots[i] = key
        self._lines[i] = line
        self._count += 1
        if self._count * 8 > mask * MAX_LOAD_EIGHTHS:
            self._grow()
        return 0

    def _grow(self) -> None:
        old_slots, old_lines = self._slots, self._lines
        capacity = 2 * len(old_slots)
        self._slots = array("q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        self._mask = capacity - 1
        self._count = 0
        for key, line in zip(old_slots, old_lines, strict=True):
            if key != _EMPTY:
                self.insert(key, line)
