"""Which rows of a run hold an email seen earlier in it, and on which line it was first seen,
in memory that stays flat however large the segment.

Up to ``EXACT_LIMIT`` keys the exact table answers at once (``Deduplicator``: fast, 19-38
bytes a key). Past it, the table's pairs go to disk and a Bloom filter (``SeenFilter``,
about 10 bits a key) takes over: a key it has certainly not seen is new at once; a key it
may have seen is *held*: its row waits, unsent, and is resolved exactly once every row is
read (``resolve``), against the (key, line) pairs of every new row, spilled to disk in 64
partitions by the key's top bits so that each partition is resolved on its own with
Arrow's kernels. A held row whose email went through earlier is a duplicate of that line;
among held rows of one email not seen otherwise (the filter erred), the first is kept and
sent after all, the others are its duplicates. Duplicates are never sent either way.
"""

from __future__ import annotations

import tempfile
from array import array
from pathlib import Path
from typing import IO, Iterator, Sequence

from exporter.arrow_views import arrow_view
from exporter.mapping.dedupe import Deduplicator
from exporter.mapping.seen_filter import SeenFilter

EXACT_LIMIT = 2_000_000  # keys the exact table holds (about 50 MB) before the filter takes over
PARTITION_BITS = 6
FLUSH_PAIRS = 1 << 18  # pairs buffered in memory across partitions before they are written (4 MB)


class _Pairs:
    """(key, value) pairs in ``1 << PARTITION_BITS`` partitions on disk, by the key's top bits."""

    def __init__(self, folder: Path):
        self._folder = folder
        count = 1 << PARTITION_BITS
        self._keys: list[array] = [array("q") for _ in range(count)]
        self._values: list[array] = [array("q") for _ in range(count)]
        self._files: list[tuple[IO[bytes], IO[bytes]] | None] = [None] * count
        self._buffered = 0
        self.count = 0

    def add(self, keys: Sequence[int], values: Sequence[int]) -> None:
        shift = 64 - PARTITION_BITS
        mask = (1 << PARTITION_BITS) - 1
        for key, value in zip(keys, values, strict=True):
            p = (key >> shift) & mask
            self._keys[p].append(key)
            self._values[p].append(value)
        self._buffered += len(keys)
        self.count += len(keys)
        if self._buffered >= FLUSH_PAIRS:
            self.flush()

    def flush(self) -> None:
        for p, (keys, values) in enumerate(zip(self._keys, self._values, strict=True)):
            if keys:
                files = self._files[p]
                if files is None:
                    files = self._files[p] = (tempfile.TemporaryFile(dir=self._folder),  # noqa: SIM115
                                              tempfile.TemporaryFile(dir=self._folder))  # noqa: SIM115
                files[0].write(keys)
                files[1].write(values)
                self._keys[p], self._values[p] = array("q"), array("q")
        self._buffered = 0

    def partition(self, p: int) -> tuple[array, array]:
        keys, values = array("q"), array("q")
        files = self._files[p]
        if files is not None:
            for file, into in zip(files, (keys, values), strict=True):
                file.seek(0)
                into.frombytes(file.read())
        return keys, values

    def close(self) -> None:
        for files in self._files:
            if files is not None:
                files[0].close()
                files[1].close()
        self._files = [None] * len(self._files)


class FirstSeen:
    def __init__(self, folder: Path | None):
        """``folder``: where pairs are spilled past ``EXACT_LIMIT`` (None: the exact table only)."""
        self._folder = folder
        self._table: Deduplicator | None = Deduplicator()
        self._filter: SeenFilter | None = None
        self._fresh: _Pairs | None = None
        self._held: _Pairs | None = None
        self._count = 0

    @property
    def holds(self) -> bool:
        """Rows wait for ``resolve`` (the filter has taken over)."""
        return self._filter is not None

    def reserve(self, count: int) -> None:
        if self._folder is not None and count > EXACT_LIMIT and self._count == 0:
            self._to_filter(count)
        elif self._table is not None:
            self._table.reserve(count)

    def unique(self, keys: Sequence[int], lines: Sequence[int]) -> tuple[list[int], list[tuple[int, int]], list[int]]:
        """Positions of new keys; of keys seen before, with the line first seen on; and of keys
        perhaps seen, held for ``resolve`` (only once the filter has taken over)."""
        if self._table is not None:
            fresh, seen = self._table.unique(keys, lines)
            self._count += len(fresh)
            if self._count > EXACT_LIMIT and self._folder is not None:
                self._to_filter(2 * self._count)
            return fresh, seen, []
        assert self._filter is not None and self._fresh is not None
        fresh, held = self._filter.add(keys)
        self._fresh.add([keys[i] for i in fresh], [lines[i] for i in fresh])
        self._count += len(fresh)
        return fresh, [], held

    def hold(self, keys: Sequence[int], lines: Sequence[int], indexes: Sequence[int]) -> None:
        """Held rows' keys and lines, with their number in the held rows' store."""
        assert self._held is not None
        self._held.add(keys, [(index << 32) | line for index, line in zip(indexes, lines, strict=True)])

    def _to_filter(self, expected: int) -> None:
        assert self._folder is not None
        self._filter = SeenFilter(expected)
        self._fresh, self._held = _Pairs(self._folder), _Pairs(self._folder)
        if self._table is not None:
            keys, lines = self._table.pairs()
            self._filter.add(keys)
            self._fresh.add(keys, lines)
        self._table = None

    def resolve(self) -> Iterator[tuple[list[tuple[int, int]], array]]:
        """Per partition: the held rows that are duplicates, as (line, line first seen on), and
        the numbers of the held rows to send after all (sorted)."""
        if self._held is None or self._held.count == 0:
            return
        import pyarrow.compute as pc

        assert self._fresh is not None
        self._filter = None  # every row is read: the filter's memory is the resolution's now
        self._fresh.flush()
        self._held.flush()
        for p in range(1 << PARTITION_BITS):
            held_keys, held_values = self._held.partition(p)
            if not held_keys:
                continue
            fresh_keys, fresh_lines = self._fresh.partition(p)
            found = pc.index_in(arrow_view(held_keys), value_set=arrow_view(fresh_keys)).to_pylist()
            del fresh_keys
            duplicates: list[tuple[int, int]] = []
            unmatched: list[tuple[int, int, int]] = []  # (key, line, index)
            for at, value in enumerate(held_values):
                line = value & 0xFFFFFFFF
                if found[at] is not None:
                    duplicates.append((line, fresh_lines[found[at]]))
                else:
                    unmatched.append((held_keys[at], line, value >> 32))
            kept = array("q")
            unmatched.sort()
            first_key, first_line = None, 0
            for key, line, index in unmatched:
                if key != first_key:
                    first_key, first_line = key, line
                    kept.append(index)
                else:
                    duplicates.append((line, first_line))
            yield duplicates, kept

    def close(self) -> None:
        for pairs in (self._fresh, self._held):
            if pairs is not None:
                pairs.close()
        self._fresh = self._held = None
        self._filter = None
        self._table = Deduplicator(2)
