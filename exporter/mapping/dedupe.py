"""Drops a second row for an email already seen in this run.

Only a 64-bit hash of each lower-cased email is kept, in an open-addressing table of
machine words: 16 bytes per address at worst, where a Python ``set`` of ints costs ~100
(a million-row segment would spend 100 MB of the 150 MB budget on it). Two different
addresses share a hash with odds near 1 in 10^7 per million-row run; the second would
be counted as a duplicate, never dropped without a count.
"""

from __future__ import annotations

from array import array
from typing import Iterable

_EMPTY = 0


class Deduplicator:
    def __init__(self, capacity: int = 1 << 16):
        self._slots = array("q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._count = 0

    def unique(self, hashes: Iterable[int]) -> list[int]:
        """Positions of the hashes not seen before (in this call or an earlier one)."""
        insert = self._insert
        return [i for i, key in enumerate(hashes) if insert(key or 1)]

    def _insert(self, key: int) -> bool:
        """Add ``key``; False if it was already there. Linear probing, grown at half full."""
        slots, mask = self._slots, self._mask
        i = key & mask
        while True:
            held = slots[i]
            if held == _EMPTY:
                break
            if held == key:
                return False
            i = (i + 1) & mask
        slots[i] = key
        self._count += 1
        if self._count * 2 > mask:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("q", bytes(16 * len(old)))
        self._mask = len(self._slots) - 1
        self._count = 0
        for key in old:
            if key != _EMPTY:
                self._insert(key)
