"""One run against the snapshot: which profiles are new, changed or unchanged, which rows
are duplicates, and what the next snapshot holds.

The snapshot's own arrays do the de-duplication of its members: each member gets the line
this run first saw it on (4 bytes a member; 0 = not seen, so a leaver), and the
fingerprint of a changed member is overwritten in place. Only emails the snapshot does not
hold go through the ``Deduplicator`` table and into this run's list of new members (their
keys and fingerprints in arrays, their emails spooled to disk). Memory is therefore about
16 bytes a snapshot member plus the table's 24-48 bytes a new member.

The next snapshot is what Klaviyo really holds after the run: old members (minus the
leavers mirror mode removed; a changed member Klaviyo refused keeps fingerprint 0, so the
next run resends it), plus the new members Klaviyo imported.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, AsyncIterator

from exporter.mapping.chunks import MappedChunk
from exporter.mapping.dedupe import Deduplicator
from exporter.sync.keys import email_key, fingerprint
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
        self.new_keys, self.new_fps, self.new_lines = array("q"), array("I"), array("I")
        self._emails: IO[str] | None = None
        if spool is not None:
            self._emails = (spool / "new-members.txt").open("w+", encoding="utf-8")
        self.new = self.changed = 0
        self.samples = Samples()

    def classify(self, chunk: MappedChunk) -> Classified:
        keep: list[int] = []
        duplicates: list[tuple[int, int]] = []
        unchanged = 0
        snapshot, first_line, recording = self.snapshot, self.first_line, self._emails is not None
        find = snapshot.find if snapshot is not None else None
        fps = snapshot.fps if snapshot is not None else None
        insert = self.table.insert
        for i, key in enumerate(chunk.keys):
            line = chunk.lines[i]
            at = find(key) if find is not None else -1
            if at >= 0:
                assert fps is not None
                first = first_line[at]
                if first:
                    duplicates.append((i, first))
                    continue
                first_line[at] = line
                fp = fingerprint(chunk.body(i))
                if fps[at] == fp and not self.resend_all:
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
            self.new += 1
            if recording:
                assert self._emails is not None
                self.new_keys.append(key)
                self.new_fps.append(fingerprint(chunk.body(i)))
                self.new_lines.append(line)
                self._emails.write(chunk.emails[i] + "\n")
                self.samples.add(self.samples.new, line, chunk.emails[i])
            keep.append(i)
        return Classified(keep, unchanged, duplicates)

    def leavers(self) -> list[int]:
        """Snapshot members this run never saw (positions in the snapshot)."""
        return [at for at, line in enumerate(self.first_line) if not line]

    async def write(self, writer: SnapshotWriter, old_emails: AsyncIterator[str] | None, refused: set[int],
                    removed: set[int]) -> None:
        """Fill ``writer`` with the next snapshot: ``refused`` lines were not imported by
        Klaviyo; ``removed`` are keys of leavers taken off the list."""
        snapshot = self.snapshot
        old_keys = snapshot.keys if snapshot is not None else array("q")
        old_fps = snapshot.fps if snapshot is not None else array("I")
        if refused:
            for at, line in enumerate(self.first_line):
                if line in refused:
                    old_fps[at] = 0  # the change did not reach Klaviyo: resend it next time
        order = sorted((j for j in range(len(self.new_keys)) if self.new_lines[j] not in refused),
                       key=self.new_keys.__getitem__)
        i = j = 0
        while i < len(old_keys) or j < len(order):
            if j == len(order) or (i < len(old_keys) and old_keys[i] < self.new_keys[order[j]]):
                if old_keys[i] not in removed:
                    writer.member(old_keys[i], old_fps[i])
                i += 1
            else:
                position = order[j]
                writer.member(self.new_keys[position], self.new_fps[position])
                j += 1
        if old_emails is not None:
            async for email in old_emails:
                if not removed or email_key(email) not in removed:
                    writer.email(email)
        if self._emails is not None:
            self._emails.seek(0)
            for position, email in enumerate(self._emails):
                if self.new_lines[position] not in refused:
                    writer.email(email.rstrip("\n"))

    def close(self) -> None:
        if self._emails is not None:
            self._emails.close()


def header_for(list_id: str, mapping: str, previous: SnapshotHeader | None, full: bool, run_id: str,
               written_at: str) -> SnapshotHeader:
    runs = 0 if full or previous is None else previous.runs_since_full + 1
    return SnapshotHeader(list_id, mapping, 0, runs, run_id, written_at)
