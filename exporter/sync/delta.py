"""One run against the snapshot: which profiles are new, changed or unchanged, which rows
are duplicates, and what the next snapshot holds.

The snapshot's own arrays do the de-duplication of its members: a byte a member says whether
this run has seen it (``SeenMembers``; not seen: a leaver), the line it was first seen on goes
to disk, and the fingerprint of a changed member is overwritten in place. A duplicate of a
member is listed once every row is read, with the line it names. Only emails the snapshot
does not hold go through ``FirstSeen`` (an exact table, then a filter with held rows resolved
at the end); new members' keys, fingerprints, lines and emails are sorted into bounded runs
on disk as the run goes on, and the runs are merged into one (``merge_new_members``) once
every row is read. Memory is therefore about 11 bytes a snapshot member (6 of its key in
``MemberIndex``, 4 of fingerprint, 1 seen) plus, for new members, at most the exact table's
50 MB or about 10 bits each.

The next snapshot is what Klaviyo really holds after the run: old members (minus the
leavers mirror mode removed; a changed member Klaviyo refused keeps fingerprint 0, so the
next run resends it), plus the new members Klaviyo imported.
"""

from __future__ import annotations

import io
import itertools
import operator
import tempfile
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

import orjson

from exporter.arrow_views import arrow_view
from exporter.mapping.chunks import MappedChunk
from exporter.mapping.first_seen import FirstSeen
from exporter.sources.rows import RowBlock
from exporter.sync.held import HeldRows
from exporter.sync.keys import KEYINGS, NEW_SNAPSHOTS, run_keys
from exporter.sync.member_index import MemberIndex
from exporter.sync.seen_members import SeenMembers
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
    def __init__(self, snapshot: Snapshot | None, resend_all: bool, spool: Path | None, scratch: Path | None = None):
        """``snapshot``: the export's (None: a first run, or one for another list);
        ``resend_all``: send members even when unchanged (``--full``, a new mapping);
        ``spool``: a folder for new members' emails (None: no snapshot is written: none is kept,
        or a dry run); ``scratch``: a folder where de-duplication may spill, past a few million
        new emails (None: it stays in memory)."""
        self.snapshot = snapshot
        # Keys and fingerprints are made as the snapshot's were (its header names how), so
        # the two are comparable; a run without one starts a snapshot of the newest kind.
        self.keying = KEYINGS[snapshot.header.keys] if snapshot is not None else NEW_SNAPSHOTS
        members = snapshot.members if snapshot is not None else 0
        self.members = SeenMembers(members, scratch)
        self.resend_all = resend_all
        self._scratch = scratch
        self.table = FirstSeen(scratch)
        self._held: HeldRows | None = None
        self._kept = array("q")  # numbers of the held rows to send after all, once resolved
        self._spool: _Spool | None = _Spool(spool) if spool is not None else None
        self.new = self.changed = 0
        self.samples = Samples()
        # Members whose row drew field warnings when last sent: their rows are mapped again even
        # when unchanged (not sent), so this run's rejects file lists their warnings too.
        self.recheck = _positions(snapshot, snapshot.warned) if snapshot is not None and snapshot.warned else None
        self.rechecked = 0
        self.warned: dict[int, int] | None = {}  # key -> line of rows that drew warnings (None: too many)
        # clear_emptied: each member's email line in the snapshot carries "\t" + the hex bits of
        # the fields it had (``ProfileMapper.tracked``); a changed member's new bits, by position.
        self.tracked: list[str] = []  # the mapper's tracked fields (``ProfileMapper.tracked``); none: no tracking
        self.changed_fields: dict[int, int] = {}

    @property
    def fingerprinting(self) -> bool:
        """Each row's fingerprint is needed: to compare it with the snapshot, or to record it."""
        return self._spool is not None or self.comparing

    def email_keys(self, emails_lower: list[bytes]) -> array:
        """Keys of lower-cased UTF-8 emails (0 for an empty one). They must outlive the run
        (``keying``) when they are compared with a snapshot or written to one; otherwise they
        only de-duplicate within the run (``run_keys``, cheaper)."""
        return (self.keying.email_keys if self.fingerprinting else run_keys)(emails_lower)

    @property
    def comparing(self) -> bool:
        """Rows are compared with a snapshot (not a first or a full run)."""
        return self.snapshot is not None and not self.resend_all

    def skip_unchanged(self, block: RowBlock, indexes: list[int]) -> tuple[RowBlock, int, dict[int, int]]:
        """Before mapping: rows whose email the snapshot holds with the same raw values (the
        ``indexes`` columns, email first) are unchanged, and are not mapped at all: the same
        values map to the same profile, which Klaviyo imported. Returns the other rows, how
        many were skipped, and each other row's fingerprint by line (none without a snapshot
        kept: nothing to compare or record)."""
        if not self.fingerprinting:
            return block, 0, {}
        pick = operator.itemgetter(*indexes) if len(indexes) > 1 else lambda row: (row[indexes[0]],)
        texts: list[bytes] = []
        emails: list[object] = []
        for row in block.rows:
            try:
                values = pick(row)
                text = "\x1f".join(values)
            except (IndexError, TypeError):  # a short row, or values that are not all text
                text = _raw_text(row, indexes)
                values = (row[indexes[0]] if indexes[0] < len(row) else None,)
            texts.append(text.encode("utf-8", "surrogatepass"))
            emails.append(values[0])
        fps = self.keying.fingerprints(texts)
        if not self.comparing:
            return block, 0, dict(zip(block.lines, fps, strict=True))
        keys = self.keying.email_keys([email.strip().lower().encode("utf-8", "surrogatepass") if type(email) is str else b""
                                       for email in emails])
        keep = self.skip_known(block.lines, keys, fps)
        lines = [block.lines[i] for i in keep]
        fingerprints_by_line = {line: fps[i] for line, i in zip(lines, keep, strict=True)}
        skipped = len(block.lines) - len(keep)
        if not skipped:
            return block, 0, fingerprints_by_line
        rows = [block.rows[i] for i in keep]
        return RowBlock(lines, rows, block.has_undecodable, block.rejects, block.damage), skipped, fingerprints_by_line

    def skip_known(self, lines: Sequence[int], keys: Sequence[int], fps: Sequence[int]) -> list[int]:
        """Positions of the rows to map: not those whose email key (0: none) the snapshot holds,
        not yet seen in this run, with the same fingerprint (each such member is marked seen)."""
        assert self.snapshot is not None
        find, seen, known, recheck = self.snapshot.find, self.members.seen, self.snapshot.fps, self.recheck
        keep: list[int] = []
        firsts: list[int] = []
        for i, key in enumerate(keys):
            if key:
                at = find(key)
                if at >= 0 and not seen[at] and known[at] == fps[i]:
                    if recheck is not None and recheck[at >> 3] >> (at & 7) & 1:
                        self.rechecked += 1  # unchanged, but mapped again for its warnings
                    else:
                        seen[at] = 1
                        firsts.append(at)
                        continue
            keep.append(i)
        if len(firsts) == len(lines):
            self.members.first_seen(firsts, lines)
        elif firsts:
            kept = set(keep)
            self.members.first_seen(firsts, [line for i, line in enumerate(lines) if i not in kept])
        return keep

    def note_warnings(self, chunk: MappedChunk) -> None:
        """Remember which members' rows drew field warnings (their keys), for the next snapshot."""
        if self._spool is None or self.warned is None:
            return
        at = {line: i for i, line in enumerate(chunk.lines)}
        for warning in chunk.warnings:
            i = at.get(warning.line)
            if i is not None:
                self.warned[chunk.keys[i]] = warning.line
        if len(self.warned) > MAX_WARNED:
            self.warned = None  # past this, the next run re-checks nobody (the report says so)

    def warned_members(self, refused: set[int], removed: set[int]) -> array:
        """Keys of the next snapshot's members whose rows drew warnings: those warned in this
        run (not refused by Klaviyo), and members this run did not see that were warned before."""
        snapshot = self.snapshot
        if self.warned is None:
            return array("q")
        keys = {key for key, line in self.warned.items() if line not in refused}
        if snapshot is not None:
            for key in snapshot.warned:
                at = snapshot.find(key)
                if at >= 0 and not self.members.seen[at] and at not in removed:
                    keys.add(key)
            keys = {key for key in keys if (at := snapshot.find(key)) < 0 or at not in removed}
        return array("q", sorted(keys))

    def classify(self, chunk: MappedChunk, fingerprints: dict[int, int], damaged: set[int]) -> Classified:
        """A block's profiles (after ``skip_unchanged``, with its fingerprints, and the lines of
        its damaged records): snapshot members first, one by one, then the others through the
        de-duplication table all at once. Rows that repeat a member are not among the
        duplicates returned: ``held_duplicates`` lists them once every row is read."""
        keep: list[int] = []
        unchanged = 0
        candidates: list[int] | None = None  # positions of the emails the snapshot does not hold (None: all)
        if self.snapshot is not None:
            candidates = []
            find, known, read, resend_all = self.snapshot.find, self.snapshot.fps, self.members.seen, self.resend_all
            lines = chunk.lines
            firsts, first_lines, repeated, repeated_lines = array("I"), array("I"), array("I"), array("I")
            for i, key in enumerate(chunk.keys):
                at = find(key)
                if at < 0:
                    candidates.append(i)
                    continue
                line = lines[i]
                if read[at]:  # a duplicate of a member
                    repeated.append(at)
                    repeated_lines.append(line)
                    continue
                read[at] = 1
                firsts.append(at)
                first_lines.append(line)
                fp = fingerprints.get(line, 0)  # none on a full dry run: nothing to compare or write
                if known[at] == fp and not resend_all:
                    unchanged += 1
                    continue
                known[at] = fp
                if self.tracked:
                    self.changed_fields[at] = chunk.fields_set[i]
                self.changed += 1
                self.samples.add(self.samples.changed, line, chunk.emails[i])
                keep.append(i)
            self.members.first_seen(firsts, first_lines)
            self.members.duplicates_of(repeated, repeated_lines)
        if candidates is None or len(candidates) == len(chunk):
            fresh, seen, held = self.table.unique(chunk.keys, chunk.lines)
        else:
            fresh, seen, held = self.table.unique(array("q", [chunk.keys[i] for i in candidates]),
                                                  array("I", [chunk.lines[i] for i in candidates]))
            fresh = [candidates[j] for j in fresh]
            seen = [(candidates[j], first) for j, first in seen]
            held = [candidates[j] for j in held]
        if held:
            self._hold(chunk, held, fingerprints, damaged)
        self._record_new(chunk, fresh, fingerprints)
        return Classified(sorted(keep + fresh) if keep else fresh, unchanged, seen)

    def _hold(self, chunk: MappedChunk, held: list[int], fingerprints: dict[int, int], damaged: set[int]) -> None:
        """Rows whose email may have been seen: spilled, unsent, until ``held_duplicates``."""
        if self._held is None:
            assert self._scratch is not None
            self._held = HeldRows(self._scratch)
        numbers = self._held.add(chunk, held, fingerprints, damaged)
        self.table.hold([chunk.keys[i] for i in held], [chunk.lines[i] for i in held], numbers)

    def held_duplicates(self) -> Iterator[list[tuple[int, int]]]:
        """Once every row is read: the held rows that are duplicates, and the rows that repeat a
        snapshot member, as (line, line kept), a batch at a time. ``held_to_send`` then has the
        held rows to send after all."""
        self._kept = array("q")
        for duplicates, kept in self.table.resolve():
            self._kept.extend(kept)
            yield duplicates
        yield from self.members.duplicates()

    def held_to_send(self) -> Iterator[tuple[MappedChunk, set[int]]]:
        """The held rows whose email no row sent before: new members after all, in line order
        of their holding, with the lines of their damaged records."""
        if self._held is None or not self._kept:
            return
        for chunk, fingerprints, damaged in self._held.read(array("q", sorted(self._kept))):
            self._record_new(chunk, list(range(len(chunk))), fingerprints)
            yield chunk, damaged

    def _record_new(self, chunk: MappedChunk, fresh: list[int], fingerprints: dict[int, int]) -> None:
        """Count the new members, sample them, and spool them for the next snapshot."""
        self.new += len(fresh)
        if not fresh:
            return
        if len(fresh) == len(chunk):
            keys, lines, emails = chunk.keys, chunk.lines, chunk.emails
        else:
            keys = array("q", [chunk.keys[i] for i in fresh])
            lines = array("I", [chunk.lines[i] for i in fresh])
            emails = [chunk.emails[i] for i in fresh]
        for line, email in zip(lines[:SAMPLE_SIZE], emails[:SAMPLE_SIZE], strict=True):
            self.samples.add(self.samples.new, line, email)
        if self.tracked:
            emails = [f"{chunk.emails[i]}\t{chunk.fields_set[i]:x}" for i in fresh]
        if self._spool is not None:
            self._spool.add(keys, array("I", map(fingerprints.__getitem__, lines)), lines, emails)

    def expect(self, rows: int) -> None:
        """Size the table for about this many rows at once, rather than growing it (each growth
        holds the old table and the new one)."""
        self.table.reserve(rows - len(self.members.seen))

    def leavers(self) -> list[int]:
        """Snapshot members this run never saw (positions in the snapshot)."""
        return self.members.unseen()

    def write(self, writer: SnapshotWriter, old_emails: Path | None, refused: set[int], removed: set[int]) -> None:
        """Fill ``writer`` with the next snapshot: the old members (their emails line by line
        in ``old_emails``) but the leavers at positions ``removed``, and the new members whose
        lines Klaviyo did not refuse (``refused``). Old members go in runs between the new
        ones, a slice at a time, so a refresh that adds few costs little per member."""
        self.table.close()  # done with (a sending run freed it already, to merge the runs)
        snapshot = self.snapshot
        old_fps = snapshot.fps if snapshot is not None else array("I")
        old = snapshot.index if snapshot is not None else MemberIndex(io.BytesIO(), 0)  # a first run: none
        refused_members = self.members.members_on(refused)
        for at in refused_members:
            old_fps[at] = 0  # the change did not reach Klaviyo: resend it next time
        gone = sorted(removed)
        changed = sorted(self.changed_fields)
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
                        for at in changed[bisect_left(changed, cursor):bisect_left(changed, stop)]:
                            if at not in refused_members:  # what Klaviyo now holds for it
                                emails[at - cursor] = with_fields(emails[at - cursor], self.changed_fields[at])
                        writer.members_from(old.keys_between(cursor, stop), old_fps[cursor:stop], emails)
                        cursor = stop
                    elif cursor in removed:
                        lines.readline()  # a leaver taken off the list
                        cursor += 1

            if self._spool is not None:
                for keys, fps, emails in self._spool.sorted_members(refused):
                    old_until(max(cursor, old.lower_bound(keys[0])))
                    if cursor == old.count or keys[-1] < old.key_at(cursor):
                        writer.members_from(keys, fps, emails)  # no old member among them: all at once
                        continue
                    for key, fp, email in zip(keys, fps, emails, strict=True):
                        old_until(max(cursor, old.lower_bound(key)))
                        writer.member(key, fp)
                        writer.email(email)
            old_until(old.count)

    def emptied(self, old_emails: Path, refused: set[int]) -> Iterator[tuple[str, int]]:
        """(identity, bits of the fields it had and has no longer) of each changed member whose
        change reached Klaviyo, from the fields its snapshot line says it had."""
        refused_members = self.members.members_on(refused)
        wanted = iter(sorted(at for at in self.changed_fields if at not in refused_members))
        target = next(wanted, None)
        if target is None:
            return
        with old_emails.open("rb") as lines:
            for at, line in enumerate(lines):
                if at == target:
                    identity, _, had = line.rstrip(b"\n").partition(b"\t")
                    lost = int(had, 16) & ~self.changed_fields[at] if had else 0  # no bits: none known, none cleared
                    if lost:
                        yield identity.decode("utf-8", "replace"), lost
                    target = next(wanted, None)
                    if target is None:
                        return

    def merge_new_members(self) -> None:
        """Merge the new members' sorted runs into one, ahead of ``write``: a sending run does
        it once every row is read, while Klaviyo finishes its last jobs, so the write at the end
        reads one run. The de-duplication table is done with by then: freed first."""
        self.table.close()
        if self._spool is not None:
            self._spool.merge_runs()

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
        self.table.close()
        if self._held is not None:
            self._held.close()
        self.members.close()
        if self.snapshot is not None:
            self.snapshot.close()


SLICE = 65_536  # old members copied at once


def with_fields(line: bytes, fields_set: int) -> bytes:
    """A snapshot email line with these field bits (``email\tbits\n``)."""
    return line.rstrip(b"\n").partition(b"\t")[0] + b"\t" + format(fields_set, "x").encode() + b"\n"
MAX_WARNED = 200_000  # members whose warnings a snapshot tracks (8 bytes each on disk, ~100 in memory here)


def _positions(snapshot: Snapshot, keys: array) -> bytearray:
    """A bitmap of the snapshot positions of these keys (one bit a member)."""
    bits = bytearray((snapshot.members + 7) // 8)
    for key in keys:
        at = snapshot.find(key)
        if at >= 0:
            bits[at >> 3] |= 1 << (at & 7)
    return bits


class _Spool:
    """New members, sorted by key a run at a time as they come, each run kept on disk (keys,
    fingerprints and lines as machine words, emails as lines).

    Runs are sorted during the run, in the thread that maps the blocks, and with Arrow's
    kernels (``sort_indices``, ``take``). Once every job is sent they are merged into one run
    (``merge_runs``) while Klaviyo finishes the last jobs, so the snapshot write at the end,
    the last wait of a run, only reads it, leaving out the lines Klaviyo refused.
    """

    RUN = 32_768  # members sorted at once

    def __init__(self, folder: Path):
        self._folder = folder
        self._pending: list[tuple[array, array, array, list[str]]] = []  # not yet in a sorted run
        self._pending_members = 0
        self._runs: list[tuple[IO[bytes], IO[bytes], int]] = []  # (numbers, email lines, members)

    def add(self, keys: array, fps: array, lines: array, emails: list[str]) -> None:
        self._pending.append((keys, fps, lines, emails))
        self._pending_members += len(keys)
        if self._pending_members >= self.RUN:
            self._sort_pending()

    def _sort_pending(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        keys, fps, lines, emails = array("q"), array("I"), array("I"), []
        for more_keys, more_fps, more_lines, more_emails in self._pending:
            keys.extend(more_keys)
            fps.extend(more_fps)
            lines.extend(more_lines)
            emails += more_emails
        self._pending, self._pending_members = [], 0
        if not keys:
            return
        order = pc.sort_indices(arrow_view(keys))
        numbers, text = self._run_files()
        for values in (keys, fps, lines):
            numbers.write(_buffer(arrow_view(values).take(order)))
        text.write(_buffer(pc.binary_join_element_wise(pa.array(emails, pa.string()).take(order), "", "\n")))
        self._runs.append(_rewound(numbers, text, len(keys)))

    def _run_files(self) -> tuple[IO[bytes], IO[bytes]]:
        """A run's two files: its keys, then fingerprints, then lines as machine words; its
        emails as lines. Closed with the spool."""
        return tempfile.TemporaryFile(dir=self._folder), tempfile.TemporaryFile(dir=self._folder)  # noqa: SIM115

    def sorted_members(self, refused: set[int]) -> Iterator[tuple[array, array, list[bytes]]]:
        """Blocks of (keys, fingerprints, email lines) of the new members Klaviyo imported
        (not those on the ``refused`` lines), in ascending key order."""
        return ((keys, fps, emails) for keys, fps, _, emails in self._members(refused))

    def merge_runs(self) -> None:
        """Replace the sorted runs with one, every member kept with its line (what Klaviyo
        refuses is only known later, and left out when the run is read). Past ``FAN_IN`` runs
        (about 10M new members) they are merged in groups first, so the blocks held at once
        stay bounded: 1,526 runs at 50M, merged at once, held 780,000 members (about 100 MB)."""
        self._sort_pending()
        while len(self._runs) > 1:
            self._runs = [self._merged_run(self._runs[at:at + FAN_IN]) for at in range(0, len(self._runs), FAN_IN)]

    def _merged_run(self, runs: list[tuple[IO[bytes], IO[bytes], int]]) -> tuple[IO[bytes], IO[bytes], int]:
        """One sorted run of these runs' members (which are closed)."""
        if len(runs) == 1:
            return runs[0]
        total = sum(count for _, _, count in runs)
        numbers, text = self._run_files()
        at = 0
        for keys, fps, lines, emails in _members_of(runs, set()):
            for values, offset in ((keys, 8 * at), (fps, 8 * total + 4 * at), (lines, 12 * total + 4 * at)):
                numbers.seek(offset)
                numbers.write(values)
            text.writelines(emails)
            at += len(keys)
        for run_numbers, run_text, _ in runs:
            run_numbers.close()
            run_text.close()
        return _rewound(numbers, text, total)

    def _members(self, refused: set[int]) -> Iterator[tuple[array, array, array, list[bytes]]]:
        """The runs' members in ascending key order, a block at a time: one run as it is,
        several merged."""
        self._sort_pending()
        if len(self._runs) > FAN_IN:
            self.merge_runs()
        return _members_of(self._runs, refused)

    def close(self) -> None:
        for numbers, text, _ in self._runs:
            numbers.close()
            text.close()


MERGE_MEMBERS = 65_536  # members held at once from all sorted runs while merging them
MIN_MERGE_BLOCK = 512
FAN_IN = 320  # runs merged at once: at most 160,000 members held (a 10M run's 305 runs in one pass)


def _members_of(runs: list[tuple[IO[bytes], IO[bytes], int]],
                refused: set[int]) -> Iterator[tuple[array, array, array, list[bytes]]]:
    block = max(MIN_MERGE_BLOCK, MERGE_MEMBERS // max(len(runs), 1))
    readers = [_read_run(numbers, text, count, block, refused) for numbers, text, count in runs]
    return readers[0] if len(readers) == 1 else _merged(readers)


def _rewound(numbers: IO[bytes], text: IO[bytes], count: int) -> tuple[IO[bytes], IO[bytes], int]:
    """A written run, ready to be read from its start."""
    numbers.seek(0)
    text.seek(0)
    return numbers, text, count


def _buffer(values: Any) -> Any:
    """The bytes of a fixed-width or binary Arrow array's values, for writing out as they are."""
    import pyarrow as pa

    if pa.types.is_binary(values.type) or pa.types.is_string(values.type):
        offsets = memoryview(values.buffers()[1]).cast("i")
        return memoryview(values.buffers()[2])[offsets[values.offset]:offsets[values.offset + len(values)]]
    width = values.type.bit_width // 8
    return memoryview(values.buffers()[1])[width * values.offset:width * (values.offset + len(values))]


def _read_run(numbers: IO[bytes], text: IO[bytes], count: int, block: int,
              refused: set[int]) -> Iterator[tuple[array, array, array, list[bytes]]]:
    """A sorted run's keys, fingerprints, lines and email lines, ``block`` members at a time,
    without the members on ``refused`` lines."""
    import pyarrow as pa
    import pyarrow.compute as pc

    refused_lines = pa.array(sorted(refused), pa.uint32()) if refused else None
    for start in range(0, count, block):
        size = min(block, count - start)
        keys, fps, lines = array("q"), array("I"), array("I")
        for values, at in ((keys, 8 * start), (fps, 8 * count + 4 * start), (lines, 12 * count + 4 * start)):
            numbers.seek(at)
            values.frombytes(numbers.read(values.itemsize * size))
        emails = list(itertools.islice(text, size))
        if refused_lines is not None:
            gone = pc.is_in(arrow_view(lines), value_set=refused_lines)
            if pc.any(gone).as_py():
                kept = pc.indices_nonzero(pc.invert(gone)).to_pylist()
                keys, fps = array("q", [keys[i] for i in kept]), array("I", [fps[i] for i in kept])
                lines, emails = array("I", [lines[i] for i in kept]), [emails[i] for i in kept]
                if not kept:
                    continue
        yield keys, fps, lines, emails


def _merged(runs: list[Iterator[tuple[array, array, array, list[bytes]]]]
            ) -> Iterator[tuple[array, array, array, list[bytes]]]:
    """Sorted runs' blocks merged into blocks in ascending key order. Each step takes, from
    every run's current block, the members up to the smallest last key among those blocks
    (all of them are due before anything still unread), and sorts them together in C."""
    import pyarrow as pa
    import pyarrow.compute as pc

    current = [next(run, None) for run in runs]
    taken = [0] * len(runs)  # how much of each run's current block earlier steps took
    while True:
        held = [block for block in current if block is not None]
        if not held:
            return
        limit = min(block[0][-1] for block in held)
        keys, fps, lines, emails = array("q"), array("I"), array("I"), []
        for r, block in enumerate(current):
            if block is None:
                continue
            run_keys, run_fps, run_lines, run_emails = block
            start, cut = taken[r], bisect_right(run_keys, limit, taken[r])
            keys.extend(run_keys[start:cut])
            fps.extend(run_fps[start:cut])
            lines.extend(run_lines[start:cut])
            emails += run_emails[start:cut]
            if cut < len(run_keys):
                taken[r] = cut
            else:
                current[r], taken[r] = next(runs[r], None), 0
        order = pc.sort_indices(arrow_view(keys))
        sorted_keys, sorted_fps, sorted_lines = array("q"), array("I"), array("I")
        for values, into in ((keys, sorted_keys), (fps, sorted_fps), (lines, sorted_lines)):
            into.frombytes(_buffer(arrow_view(values).take(order)))
        yield sorted_keys, sorted_fps, sorted_lines, pa.array(emails, pa.binary()).take(order).to_pylist()


def _raw_text(row: Sequence[object], indexes: list[int]) -> str:
    """A row's raw values as one text: a missing value and a non-text one (JSON Lines,
    Parquet) are marked, so "1" and 1 differ."""
    width = len(row)
    return "\x1f".join(value if type(value) is str else "\x1e" + orjson.dumps(value).decode()
                       for value in (row[i] if i < width else None for i in indexes))


def header_for(list_id: str, mapping: str, previous: SnapshotHeader | None, full: bool, run_id: str,
               written_at: str, keys: str, fields_tracked: bool = False) -> SnapshotHeader:
    runs = 0 if full or previous is None else previous.runs_since_full + 1
    return SnapshotHeader(list_id, mapping, 0, runs, run_id, written_at, keys, fields_tracked=fields_tracked)
