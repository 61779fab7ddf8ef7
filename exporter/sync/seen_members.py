"""Which snapshot members a delta run has seen, in one byte a member, and the line each was
first seen on, kept on disk.

The line is needed only for what is rare: the kept line a duplicate of a member names, and
the members whose change Klaviyo refused (their lines are what Klaviyo reports). So the
(member, line) pairs are written out as members are first seen, a member once, and are
read back once every row is read, for those few. A duplicate of a member is known at once
(its byte is set), but listed only then, with the line it names.
"""

from __future__ import annotations

import tempfile
from array import array
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from exporter.arrow_views import arrow_view

PAIRS_BUFFERED = 1 << 17  # pairs held in memory before they are written (1 MB)
RESOLVED_AT_ONCE = 1 << 20  # duplicates whose kept lines are looked up in one pass over the pairs


class _PairLog:
    """(member, line) pairs appended in order, on disk past a small buffer; read back in blocks."""

    def __init__(self, folder: Path | None):
        self._folder = folder
        self._members, self._lines = array("I"), array("I")
        self._files: tuple[IO[bytes], IO[bytes]] | None = None

    def extend(self, members: Sequence[int], lines: Sequence[int]) -> None:
        self._members.extend(members)
        self._lines.extend(lines)
        if len(self._members) >= PAIRS_BUFFERED:
            self._write()

    def _write(self) -> None:
        if self._files is None:
            self._files = (tempfile.TemporaryFile(dir=self._folder),  # noqa: SIM115 (closed with the log)
                           tempfile.TemporaryFile(dir=self._folder))  # noqa: SIM115
        for file, values in zip(self._files, (self._members, self._lines), strict=True):
            file.seek(0, 2)
            file.write(values)
        self._members, self._lines = array("I"), array("I")

    def blocks(self, size: int) -> Iterator[tuple[array, array]]:
        """Every pair so far, in the order added, ``size`` at a time."""
        if self._members:
            self._write()
        if self._files is None:
            return
        for file in self._files:
            file.seek(0)
        while True:
            members, lines = array("I"), array("I")
            members.frombytes(self._files[0].read(4 * size))
            lines.frombytes(self._files[1].read(4 * size))
            if not members:
                return
            yield members, lines

    def close(self) -> None:
        if self._files is not None:
            for file in self._files:
                file.close()
            self._files = None


class SeenMembers:
    def __init__(self, members: int, folder: Path | None):
        """``members``: the snapshot's; ``folder``: where the pairs go (None: the system's
        temporary folder)."""
        self.seen = bytearray(members)  # 1: this run has read the member's row
        self._first = _PairLog(folder)  # (member, line first seen on)
        self._duplicates = _PairLog(folder)  # (member, line of a later row with its email)
        self._last_asked: tuple[frozenset[int], set[int]] | None = None  # (lines, members_on's answer)

    def first_seen(self, members: Sequence[int], lines: Sequence[int]) -> None:
        """These members were first seen on these lines (their bytes are already set)."""
        self._first.extend(members, lines)

    def duplicates_of(self, members: Sequence[int], lines: Sequence[int]) -> None:
        """Rows on these lines repeat these members' emails: listed by ``duplicates``."""
        self._duplicates.extend(members, lines)

    def duplicates(self) -> Iterator[list[tuple[int, int]]]:
        """(line of the duplicate, line of the member's first row), a batch at a time."""
        import pyarrow.compute as pc

        for members, lines in self._duplicates.blocks(RESOLVED_AT_ONCE):
            wanted = pc.unique(arrow_view(members))
            firsts = self._first_lines(wanted).take(pc.index_in(arrow_view(members), value_set=wanted))
            yield list(zip(lines, firsts.to_pylist(), strict=True))

    def _first_lines(self, wanted: Any) -> Any:
        """The first line of each of the ``wanted`` members (an Arrow array of them), in their order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        found = array("I", [0]) * len(wanted)
        for members, lines in self._first.blocks(RESOLVED_AT_ONCE):
            where = pc.index_in(arrow_view(members), value_set=wanted)
            hit = pc.indices_nonzero(pc.is_valid(where))
            for slot, line in zip(where.take(hit).to_pylist(), arrow_view(lines).take(hit).to_pylist(), strict=True):
                found[slot] = line
        if 0 in found:
            raise AssertionError("a duplicate of a member never seen")  # first sightings are logged before repeats
        return pa.array(found, pa.uint32())

    def members_on(self, lines: set[int]) -> set[int]:
        """The members first seen on these lines (the lines of changed members Klaviyo refused).
        Asked twice at a run's end (clearing, then the snapshot's write): one pass over the pairs."""
        if not lines:
            return set()
        wanted = frozenset(lines)
        if self._last_asked is None or self._last_asked[0] != wanted:
            self._last_asked = (wanted, self._scan_for(wanted))
        return self._last_asked[1]

    def _scan_for(self, lines: frozenset[int]) -> set[int]:
        import pyarrow as pa
        import pyarrow.compute as pc

        value_set = pa.array(sorted(lines), pa.uint32())
        members: set[int] = set()
        for block, block_lines in self._first.blocks(RESOLVED_AT_ONCE):
            hit = pc.indices_nonzero(pc.is_in(arrow_view(block_lines), value_set=value_set))
            members.update(arrow_view(block).take(hit).to_pylist())
        return members

    def unseen(self) -> list[int]:
        """Members this run never saw (the leavers), in order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        flags = arrow_view(self.seen)
        unread = pc.equal(flags, pa.scalar(0, pa.uint8()))  # a plain 0 would widen every flag to 8 bytes first
        return pc.indices_nonzero(unread).to_pylist()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._first.close()
        self._duplicates.close()
