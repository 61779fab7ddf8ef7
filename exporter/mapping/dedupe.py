"""Drops a second row for an email already seen in this run, remembering where it was first.

Only a 64-bit key of each lower-cased email is kept (``Delta.email_keys``: the
snapshot's hash, or Python's own when no key outlives the run), in an open-addressing table of machine words,
with the line it was first seen on beside it (so a duplicate can be reported as "duplicate
of line N"): 12 bytes a slot, at most 5/8 full (19-38 bytes an address; sized once from the
segment's expected rows when known, else doubled as it fills, when a growth briefly holds
both tables), where a Python ``set`` of ints costs ~100. Two different addresses share a hash with odds near 1 in 10^7 per
million-row run; the second would be counted as a duplicate, never dropped without a count.
"""

from __future__ import annotations

from array import array
from itertools import compress
from typing import Sequence

_EMPTY = 0
REHASH_SLICE = 65_536  # slots re-inserted at once when the table grows
MAX_LOAD_EIGHTHS = 5  # grown past 5/8 full: ~4 probes for a new key, under 2 for a known one


MAX_RESERVED_SLOTS = 1 << 24  # 201 MB, room for 10.4M keys; a larger table is only grown into


def slots_for(count: int) -> int:
    """The power-of-two slots that hold ``count`` keys within the load limit, capped."""
    capacity = 1 << 16
    while capacity * MAX_LOAD_EIGHTHS < 8 * count + 8 and capacity < MAX_RESERVED_SLOTS:
        capacity *= 2
    return capacity


class Deduplicator:
    def __init__(self, capacity: int = 1 << 16):
        self._slots = array("q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        self._mask = capacity - 1
        self._count = 0

    def reserve(self, count: int) -> None:
        """Room for ``count`` keys without growing (an empty table only: no rehash needed), up
        to ``MAX_RESERVED_SLOTS``: ``count`` is an estimate from the file's size, which a file
        of tiny first rows and huge later ones makes as large as it likes."""
        capacity = slots_for(count)
        if capacity > len(self._slots) and self._count == 0:
            self._slots = array("q", bytes(8 * capacity))
            self._lines = array("I", bytes(4 * capacity))
            self._mask = capacity - 1

    def unique(self, keys: Sequence[int], lines: Sequence[int]) -> tuple[list[int], list[tuple[int, int]]]:
        """Positions of the keys not seen before (in this call or an earlier one), and for
        each other position the line its email was first seen on. One loop for the block,
        room made first, so no call and no growth check per key."""
        self._make_room(len(keys))
        slots, firsts, mask = self._slots, self._lines, self._mask
        keep: list[int] = []
        seen: list[tuple[int, int]] = []
        for i, key in enumerate(keys):
            key = key or 1
            j = key & mask
            while True:
                held = slots[j]
                if held == _EMPTY:
                    slots[j] = key
                    firsts[j] = lines[i]
                    keep.append(i)
                    break
                if held == key:
                    seen.append((i, firsts[j] or 1))
                    break
                j = (j + 1) & mask
        self._count += len(keep)
        return keep, seen

    def _make_room(self, more: int) -> None:
        """Grow (doubling) until ``more`` keys fit within the load limit."""
        while (self._count + more) * 8 > self._mask * MAX_LOAD_EIGHTHS:
            self._grow()

    def _grow(self) -> None:
        """Double the table, re-inserting its keys a slice at a time: a growth costs the old
        table and the new one, never a list of every key."""
        old_slots, old_lines = self._slots, self._lines
        capacity = 2 * len(old_slots)
        self._slots = array("q", bytes(8 * capacity))
        self._lines = array("I", bytes(4 * capacity))
        self._mask = capacity - 1
        self._count = 0
        for start in range(0, len(old_slots), REHASH_SLICE):
            keys = old_slots[start:start + REHASH_SLICE]
            held = [key != _EMPTY for key in keys]
            self.unique(array("q", compress(keys, held)), array("I", compress(old_lines[start:start + REHASH_SLICE], held)))

    def pairs(self) -> tuple[array, array]:
        """Every key held, with the line it was first seen on (to hand over to a spill)."""
        held = [key != _EMPTY for key in self._slots]
        return array("q", compress(self._slots, held)), array("I", compress(self._lines, held))
