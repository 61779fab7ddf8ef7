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
import tempfile
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, AsyncIterator, Iterator

from exporter.mapping.chunks import MappedChunk
from exporter.mapping.dedupe import Deduplicator
from exporter.sync.keys import email_key
from exporter.sync.snapshot import Snapshot, SnapshotHeader, SnapshotWriter

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

    def classify(self, chunk: MappedChunk) -> Classified:
        """One pass over a block's profiles. This runs once per row, so it inlines what it
        would call: a profile's fingerprint is the first 32 bits of BLAKE2b over its JSON bytes
        (never 0: 0 means "resend"), and ``chunk.body``."""
        keep: list[int] = []
        duplicates: list[tuple[int, int]] = []
        unchanged = new = 0
        snapshot, first_line, spool, resend_all = self.snapshot, self.first_line, self._spool, self.resend_all
        new_keys, new_fps, new_lines, new_emails = array("q"), array("I"), array("I"), []
        keys = snapshot.keys if snapshot is not None else None
        fps = snapshot.fps if snapshot is not None else array("I")
        members = len(keys) if keys is not None else 0
        insert, lines, ends, bodies = self.table.insert, chunk.lines, chunk.ends, memoryview(chunk.bodies)
        blake2b, from_bytes = hashlib.blake2b, int.from_bytes
        for i, key in enumerate(chunk.keys):
            line = lines[i]
            if keys is not None:
                at = bisect_left(keys, key)
                if at < members and keys[at] == key:
                    first = first_line[at]
                    if first:
                        duplicates.append((i, first))
                        continue
                    first_line[at] = line
                    fp = from_bytes(blake2b(bodies[ends[i - 1] if i else 0:ends[i]], digest_size=4).digest(),
                                    "little") or 1
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
                new_fps.append(from_bytes(blake2b(bodies[ends[i - 1] if i else 0:ends[i]], digest_size=4).digest(),
                                          "little") or 1)
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

    async def write(self, writer: SnapshotWriter, old_emails: AsyncIterator[str] | None, refused: set[int],
                    removed: set[int]) -> None:
        """Fill ``writer`` with the next snapshot: ``refused`` lines were not imported by
        Klaviyo; ``removed`` are keys of leavers taken off the list."""
        self.table = Deduplicator(2)  # no longer needed: free it before sorting
        snapshot = self.snapshot
        old_keys = snapshot.keys if snapshot is not None else array("q")
        old_fps = snapshot.fps if snapshot is not None else array("I")
        if refused:
            for at, line in enumerate(self.first_line):
                if line in refused:
                    old_fps[at] = 0  # the change did not reach Klaviyo: resend it next time
        old = ((old_keys[at], old_fps[at]) for at in range(len(old_keys)) if old_keys[at] not in removed)
        new = self._spool.sorted_members(refused) if self._spool is not None else iter(())
        for key, fp in heapq.merge(old, new):
            writer.member(key, fp)
        if old_emails is not None:
            async for email in old_emails:
                if not removed or email_key(email) not in removed:
                    writer.email(email)
        if self._spool is not None:
            for email in self._spool.emails(refused):
                writer.email(email)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


class _Spool:
    """New members on disk: keys, fingerprints and lines as machine words, emails as lines."""

    RUN = 65_536  # members sorted at once when the snapshot is written

    def __init__(self, folder: Path):
        self._folder = folder
        self._files = {name: (folder / f"new-{name}.bin").open("w+b") for name in ("keys", "fps", "lines")}
        self._emails = (folder / "new-emails.txt").open("w+", encoding="utf-8")
        self._runs: list[IO[bytes]] = []

    def add(self, keys: array, fps: array, lines: array, emails: list[str]) -> None:
        for name, values in (("keys", keys), ("fps", fps), ("lines", lines)):
            values.tofile(self._files[name])
        self._emails.write("\n".join(emails) + "\n")

    def _chunks(self) -> Iterator[tuple[array, array, array]]:
        for handle in self._files.values():
            handle.flush()
            handle.seek(0)
        while True:
            keys, fps, lines = array("q"), array("I"), array("I")
            for values, name in ((keys, "keys"), (fps, "fps"), (lines, "lines")):
                values.frombytes(self._files[name].read(self.RUN * values.itemsize))
            if not keys:
                return
            yield keys, fps, lines

    def sorted_members(self, refused: set[int]) -> Iterator[tuple[int, int]]:
        """(key, fingerprint) of the new members Klaviyo imported, in key order: each run of
        ``RUN`` sorted in memory and kept on disk, then the runs merged."""
        runs = []
        for keys, fps, lines in self._chunks():
            order = sorted((i for i in range(len(keys)) if lines[i] not in refused), key=keys.__getitem__)
            run = tempfile.TemporaryFile(dir=self._folder)  # noqa: SIM115 (closed with the spool)
            array("q", (keys[i] for i in order)).tofile(run)
            array("I", (fps[i] for i in order)).tofile(run)
            run.seek(0)
            self._runs.append(run)
            runs.append(_read_run(run, len(order)))
        return heapq.merge(*runs)

    def emails(self, refused: set[int]) -> Iterator[str]:
        self._emails.flush()
        self._emails.seek(0)
        chunks = self._chunks()
        for _, _, lines in chunks:
            for line in lines:
                email = self._emails.readline().rstrip("\n")
                if line not in refused:
                    yield email

    def close(self) -> None:
        for handle in (*self._files.values(), *self._runs):
            handle.close()
        self._emails.close()


def _read_run(run: IO[bytes], count: int) -> Iterator[tuple[int, int]]:
    """A sorted run's (key, fingerprint) pairs, read a block at a time."""
    block = 8_192
    for start in range(0, count, block):
        size = min(block, count - start)
        keys, fps = array("q"), array("I")
        run.seek(8 * start)
        keys.frombytes(run.read(8 * size))
        run.seek(8 * count + 4 * start)
        fps.frombytes(run.read(4 * size))
        yield from zip(keys, fps, strict=True)


def header_for(list_id: str, mapping: str, previous: SnapshotHeader | None, full: bool, run_id: str,
               written_at: str) -> SnapshotHeader:
    runs = 0 if full or previous is None else previous.runs_since_full + 1
    return SnapshotHeader(list_id, mapping, 0, runs, run_id, written_at)
