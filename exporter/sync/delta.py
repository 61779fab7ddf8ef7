"""One run against the snapshot: which profiles are new, changed or unchanged, which rows
are duplicates, and what the next snapshot holds.

The snapshot's own arrays do the de-duplication of its members: each member gets the line
this run first saw it on (4 bytes a member; 0 = not seen, so a leaver), and the
fingerprint of a changed member is overwritten in place. Only emails the snapshot does not
hold go through the ``Deduplicator`` table; new members' keys, fingerprints, lines and
emails are spooled to disk block by block and sorted in bounded runs when the snapshot is
written. Memory is therefore about 16 bytes a snapshot member plus the table's 12 bytes a
slot for new members (sized once from the segment's expected rows, at most half full).

The next snapshot is what Klaviyo really holds after the run: old members (minus the
leavers mirror mode removed; a changed member Klaviyo refused keeps fingerprint 0, so the
next run resends it), plus the new members Klaviyo imported.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import itertools
import operator
import tempfile
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

import orjson

from exporter.mapping.chunks import MappedChunk
from exporter.mapping.dedupe import Deduplicator
from exporter.sources.rows import RowBlock
from exporter.sync.keys import email_key
from exporter.sync.snapshot import Snapshot, SnapshotDamaged, SnapshotHeader, SnapshotWriter

SAMPLE_SIZE = 10  # rows of each kind a preview lists


@dataclass
class Classified:
    keep: list[int]  # positions in the chunk to send
    unchanged: int
    duplicates: list[tuple[int, int]]  # (position, line the email was first seen on)


@dataclass
class Samples:
    new: list[tuple[int, str]] = field(default_factory=list)
    changed: list[tuple[int, str]] = field(default_factory=list)

    def add(self, kind: list[tuple[int, str]], line: int, email: str) -> None:
        if len(kind) < SAMPLE_SIZE:
            kind.append((line, email))


class Delta:
    def __init__(self, snapshot: Snapshot | None, resend_all: bool, spool: Path | None):
        """``snapshot``: the export's (None: a first run, or one for another list);
        ``resend_all``: send members even when unchanged (``--full``, a new mapping);
        ``spool``: a folder for new members' emails (None: no snapshot is kept)."""
        self.snapshot = snapshot
        members = len(snapshot.keys) if snapshot is not None else 0
        self.first_line = array("I", bytes(4 * members))
        self.resend_all = resend_all
        self.table = Deduplicator()
        self._spool: _Spool | None = _Spool(spool) if spool is not None else None
        self.new = self.changed = 0
        self.samples = Samples()

    def skip_unchanged(self, block: RowBlock, indexes: list[int]) -> tuple[RowBlock, int, dict[int, int]]:
        """Before mapping: rows whose email the snapshot holds with the same raw values (the
        ``indexes`` columns, email first) are unchanged, and are not mapped at all: the same
        values map to the same profile, which Klaviyo imported. Returns the other rows, how
        many were skipped, and each other row's fingerprint by line (None without a snapshot
        kept: nothing to compare or record). A fingerprint is the first 32 bits of BLAKE2b
        over the row's raw values (never 0: 0 means "resend")."""
        if self._spool is None:
            return block, 0, {}
        snapshot, first_line = self.snapshot, self.first_line
        find = snapshot.find if snapshot is not None and not self.resend_all else None
        fps = snapshot.fps if snapshot is not None else array("I")
        blake2b, from_bytes = hashlib.blake2b, int.from_bytes
        pick = operator.itemgetter(*indexes) if len(indexes) > 1 else lambda row: (row[indexes[0]],)
        lines: list[int] = []
        rows: list[Sequence[object]] = []
        fingerprints: dict[int, int] = {}
        skipped = 0
        for line, row in zip(block.lines, block.rows, strict=True):
            try:
                values = pick(row)
                text = "\x1f".join(values)
            except (IndexError, TypeError):  # a short row, or values that are not all text
                text = _raw_text(row, indexes)
                values = (row[indexes[0]] if indexes[0] < len(row) else None,)
            fp = from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little") or 1
            email = values[0]
            if find is not None and type(email) is str:
                at = find(email_key(email.strip().lower()))
                if at >= 0 and not first_line[at] and fps[at] == fp:
                    first_line[at] = line
                    skipped += 1
                    continue
            lines.append(line)
            rows.append(row)
            fingerprints[line] = fp
        if not skipped:
            return block, 0, fingerprints
        return RowBlock(lines, rows, block.has_undecodable, block.rejects), skipped, fingerprints

    def classify(self, chunk: MappedChunk, fingerprints: dict[int, int]) -> Classified:
        """One pass over a block's profiles (after ``skip_unchanged``, with its fingerprints)."""
        keep: list[int] = []
        duplicates: list[tuple[int, int]] = []
        unchanged = new = 0
        snapshot, first_line, spool, resend_all = self.snapshot, self.first_line, self._spool, self.resend_all
        new_keys, new_fps, new_lines, new_emails = array("q"), array("I"), array("I"), []
        find = snapshot.find if snapshot is not None else None
        fps = snapshot.fps if snapshot is not None else array("I")
        insert, lines = self.table.insert, chunk.lines
        for i, key in enumerate(chunk.keys):
            line = lines[i]
            if find is not None:
                at = find(key)
                if at >= 0:
                    first = first_line[at]
                    if first:
                        duplicates.append((i, first))
                        continue
                    first_line[at] = line
                    fp = fingerprints[line]
                    if fps[at] == fp and not resend_all:
                        unchanged += 1
                        continue
                    fps[at] = fp
                    self.changed += 1
                    self.samples.add(self.samples.changed, line, chunk.emails[i])
                    keep.append(i)
                    continue
            first = insert(key, line)
            if first:
                duplicates.append((i, first))
                continue
            keep.append(i)
            new += 1
            if spool is not None:
                new_keys.append(key)
                new_fps.append(fingerprints[line])
                new_lines.append(line)
                new_emails.append(chunk.emails[i])
        self.new += new
        if spool is not None and new_keys:
            spool.add(new_keys, new_fps, new_lines, new_emails)
            for line, email in zip(new_lines, new_emails, strict=True):
                if len(self.samples.new) >= SAMPLE_SIZE:
                    break
                self.samples.add(self.samples.new, line, email)
        return Classified(keep, unchanged, duplicates)

    def expect(self, rows: int) -> None:
        """Size the table for about this many rows at once, rather than growing it (each growth
        holds the old table and the new one)."""
        self.table.reserve(rows - (len(self.first_line) if self.snapshot is not None else 0))

    def leavers(self) -> list[int]:
        """Snapshot members this run never saw (positions in the snapshot)."""
        return [at for at, line in enumerate(self.first_line) if not line]

    def write(self, writer: SnapshotWriter, old_emails: Path | None, refused: set[int], removed: set[int]) -> None:
        """Fill ``writer`` with the next snapshot: the old members (their emails line by line
        in ``old_emails``) but the leavers at positions ``removed``, and the new members whose
        lines Klaviyo did not refuse (``refused``). Old members go in runs between the new
        ones, a slice at a time, so a refresh that adds few costs little per member."""
        self.table = Deduplicator(2)  # no longer needed: free it before sorting
        snapshot = self.snapshot
        old_keys = snapshot.keys if snapshot is not None else array("q")
        old_fps = snapshot.fps if snapshot is not None else array("I")
        if refused:
            for at, line in enumerate(self.first_line):
                if line in refused:
                    old_fps[at] = 0  # the change did not reach Klaviyo: resend it next time
        gone = sorted(removed)
        with (old_emails.open("rb") if old_emails is not None else io.BytesIO()) as lines:
            cursor = 0  # the next old member to write or skip

            def old_until(end: int) -> None:
                nonlocal cursor
                while cursor < end:
                    g = bisect_left(gone, cursor)
                    stop = min(end, gone[g] if g < len(gone) else end, cursor + SLICE)
                    if stop > cursor:
                        emails = list(itertools.islice(lines, stop - cursor))
                        if len(emails) != stop - cursor:
                            raise SnapshotDamaged("the snapshot holds fewer emails than members; delete it to start over")
                        writer.members_from(old_keys[cursor:stop], old_fps[cursor:stop], emails)
                        cursor = stop
                    elif cursor in removed:
                        lines.readline()  # a leaver taken off the list
                        cursor += 1

            if self._spool is not None:
                for key, fp, email in self._spool.sorted_members(refused):
                    old_until(bisect_left(old_keys, key, cursor))
                    writer.member(key, fp)
                    writer.email(email)
            old_until(len(old_keys))

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


SLICE = 65_536  # old members copied at once


class _Spool:
    """New members on disk: keys, fingerprints and lines as machine words, emails as lines."""

    RUN = 65_536  # members sorted at once when the snapshot is written

    def __init__(self, folder: Path):
        self._folder = folder
        self._files = {name: (folder / f"new-{name}.bin").open("w+b") for name in ("keys", "fps", "lines")}
        self._emails = (folder / "new-emails.txt").open("w+", encoding="utf-8")
        self._runs: list[IO[Any]] = []

    def add(self, keys: array, fps: array, lines: array, emails: list[str]) -> None:
        for name, values in (("keys", keys), ("fps", fps), ("lines", lines)):
            values.tofile(self._files[name])
        self._emails.write("\n".join(emails) + "\n")

    def _chunks(self) -> Iterator[tuple[array, array, array, list[str]]]:
        for handle in self._files.values():
            handle.flush()
            handle.seek(0)
        self._emails.flush()
        self._emails.seek(0)
        while True:
            keys, fps, lines = array("q"), array("I"), array("I")
            for values, name in ((keys, "keys"), (fps, "fps"), (lines, "lines")):
                values.frombytes(self._files[name].read(self.RUN * values.itemsize))
            if not keys:
                return
            yield keys, fps, lines, [self._emails.readline().rstrip("\n") for _ in range(len(keys))]

    def sorted_members(self, refused: set[int]) -> Iterator[tuple[int, int, str]]:
        """(key, fingerprint, email) of the new members Klaviyo imported, in key order: each
        run of ``RUN`` sorted in memory and kept on disk, then the runs merged."""
        runs = []
        for keys, fps, lines, emails in self._chunks():
            order = sorted((i for i in range(len(keys)) if lines[i] not in refused), key=keys.__getitem__)
            numbers = tempfile.TemporaryFile(dir=self._folder)  # noqa: SIM115 (closed with the spool)
            array("q", (keys[i] for i in order)).tofile(numbers)
            array("I", (fps[i] for i in order)).tofile(numbers)
            text = tempfile.TemporaryFile("w+", dir=self._folder, encoding="utf-8")  # noqa: SIM115
            text.writelines(emails[i] + "\n" for i in order)
            for handle in (numbers, text):
                handle.seek(0)
                self._runs.append(handle)
            runs.append(_read_run(numbers, text, len(order)))
        return heapq.merge(*runs)

    def close(self) -> None:
        for handle in (*self._files.values(), *self._runs):
            handle.close()
        self._emails.close()


def _read_run(numbers: IO[bytes], text: IO[str], count: int) -> Iterator[tuple[int, int, str]]:
    """A sorted run's (key, fingerprint, email), read a block at a time."""
    block = 8_192
    for start in range(0, count, block):
        size = min(block, count - start)
        keys, fps = array("q"), array("I")
        numbers.seek(8 * start)
        keys.frombytes(numbers.read(8 * size))
        numbers.seek(8 * count + 4 * start)
        fps.frombytes(numbers.read(4 * size))
        for key, fp in zip(keys, fps, strict=True):
            yield key, fp, text.readline().rstrip("\n")


def _raw_text(row: Sequence[object], indexes: list[int]) -> str:
    """A row's raw values as one text: a missing value and a non-text one (JSON Lines,
    Parquet) are marked, so "1" and 1 differ."""
    width = len(row)
    return "\x1f".join(value if type(value) is str else "\x1e" + orjson.dumps(value).decode()
                       for value in (row[i] if i < width else None for i in indexes))


def header_for(list_id: str, mapping: str, previous: SnapshotHeader | None, full: bool, run_id: str,
               written_at: str) -> SnapshotHeader:
    runs = 0 if full or previous is None else previous.runs_since_full + 1
    return SnapshotHeader(list_id, mapping, 0, runs, run_id, written_at)
