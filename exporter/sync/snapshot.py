"""The snapshot: what one export has put in its Klaviyo list, as of its last finished run.

For each member it holds a 64-bit key of the lower-cased email, a 32-bit fingerprint of
the row's mapped values as they were sent (the header's mapping digest says which
mapping turned them into the profile), and the lower-cased email itself (mirror mode
removes leavers by email); no other personal data. The file is one blob (or local file):

    MAGIC, a JSON header line (list id, mapping digest, member count, each section's
    checksum, ...), the header line's own checksum on a line,
    keys   (count x 8 bytes, ascending),
    fingerprints (count x 4 bytes, in key order),
    warned (the header's ``warned`` x 8 bytes: keys of members whose row drew field warnings,
            ascending; their rows are mapped again by a delta run, so its rejects file lists
            their warnings too),
    emails ("email\\n" each, in key order)

Loading holds the keys and fingerprints (10 bytes a member: ``MemberIndex`` keeps 6 bytes
of each key, exactly) and looks a key up within its bucket; the emails are copied to a
local file only when leavers must be named or the snapshot rewritten, and member ``i``'s
email is line ``i`` there. A new
snapshot is written whole to a temporary file and then replaces the old one in one step
(a blob upload commits atomically; a local file is renamed over), so a crash leaves the
old snapshot or the new one, never half of either.

Mirror mode removes people on the snapshot's word, so the snapshot proves itself: the
header and every section carry an XXH3-128 checksum, checked as each is read (the emails
when they are copied), and a mismatch fails the run, removing nobody. Snapshots of the
previous format (``MAGIC_V2``, no checksums) are still read; their leavers' emails are
checked against their keys like everyone's (``mirror.checked_leaver_emails``), and the next
write gives them checksums.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, AsyncIterator, Protocol

import orjson
import xxhash

from exporter.errors import ExportError
from exporter.sources.files import BlobLocation
from exporter.sync.keys import KEYINGS
from exporter.sync.member_index import KeysOutOfOrder, MemberIndex

MAGIC = b"KLAVIYO-EXPORTER-SNAPSHOT 3\n"
MAGIC_V2 = b"KLAVIYO-EXPORTER-SNAPSHOT 2\n"  # no checksums; read, never written
MAX_HEADER = 64 * 1024
FILE_NAME = "snapshot.bin"


class SnapshotDamaged(ExportError):
    pass


@dataclass
class SnapshotHeader:
    list_id: str
    mapping: str  # digest of the mapping the fingerprints were made with
    members: int
    runs_since_full: int = 0  # for "full_every"
    run_id: str = ""
    written_at: str = ""
    keys: str = "blake2b"  # how keys and fingerprints were made (``sync.keys.KEYINGS``); absent before xxHash
    sections: dict[str, str] | None = None  # checksum of each section (keys, fps, warned, emails); None in format 2
    warned: int = 0  # members whose row drew field warnings (format 3)
    fields_tracked: bool = False  # the email lines carry the fields each member had (clear_emptied)


class SnapshotStore(Protocol):
    @property
    def description(self) -> str: ...

    def read(self, offset: int = 0) -> AsyncIterator[bytes]:
        """The stored bytes from ``offset``; nothing at all when there is no snapshot."""
        ...

    async def replace(self, path: Path) -> None: ...


class LocalSnapshotStore:
    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / FILE_NAME

    @property
    def description(self) -> str:
        return str(self.path)

    async def read(self, offset: int = 0) -> AsyncIterator[bytes]:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            handle.seek(offset)
            while chunk := handle.read(1 << 20):
                yield chunk

    async def replace(self, path: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = self.folder / f".{FILE_NAME}.{os.getpid()}.tmp"
        with path.open("rb") as source, staged.open("wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
        os.replace(staged, self.path)


class BlobSnapshotStore:
    """The snapshot as one block blob (the app: beside the export's runs in the reports container)."""

    def __init__(self, location: BlobLocation):
        self.location = location

    @property
    def description(self) -> str:
        return self.location.description

    async def read(self, offset: int = 0) -> AsyncIterator[bytes]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        async with self.location.client() as client:
            try:
                downloader = await client.download_blob(offset=offset)
            except ResourceNotFoundError:
                return
            except AzureError as exc:
                raise SnapshotDamaged(f"cannot read the snapshot {self.description}: {exc.__class__.__name__}") from None
            async for chunk in downloader.chunks():
                yield chunk

    async def replace(self, path: Path) -> None:
        async with self.location.client() as client:
            with path.open("rb") as data:
                await client.upload_blob(data, overwrite=True)


@dataclass
class Snapshot:
    header: SnapshotHeader
    index: MemberIndex  # the members' keys, ascending
    fps: array  # array('I'), in key order
    emails_at: int  # byte offset of the emails section in the stored snapshot
    warned: array = field(default_factory=lambda: array("q"))  # keys of members whose row drew warnings

    @property
    def members(self) -> int:
        return self.index.count

    def find(self, key: int) -> int:
        """The member's position, or -1."""
        return self.index.find(key)

    def close(self) -> None:
        self.index.close()


async def load_snapshot(store: SnapshotStore, scratch: Path | None = None) -> Snapshot | None:
    """The stored snapshot (keys and fingerprints only), or None if there is none. A damaged
    one is an error that says how to start over, never a silent full resend.

    The keys and fingerprints are first copied to a local file in ``scratch`` (None: the
    system's temporary folder), checked as they arrive, and only then held in memory, each in
    one allocation of its exact size: memory is never claimed on the header's word alone."""
    reader = _Reader(store.read())
    head = await reader.take(len(MAGIC))
    if not head:
        return None
    damaged = (f"the snapshot {store.description} is damaged or not a snapshot; delete it to start over "
               "(the next run is then a full one, and mirror mode cannot remove members of the lost snapshot)")
    if head not in (MAGIC, MAGIC_V2):
        raise SnapshotDamaged(damaged)
    line = await reader.line(MAX_HEADER)
    checked = head == MAGIC
    stated = await reader.line(64) if checked else b""
    try:
        header = SnapshotHeader(**orjson.loads(line))
        count = header.members
        if type(count) is not int or count < 0 or header.keys not in KEYINGS or type(header.warned) is not int \
                or not 0 <= header.warned <= count or (header.warned and not checked):
            raise ValueError
        if checked and (stated != _digest(line).encode() or not _sections_valid(header.sections)):
            raise ValueError
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise SnapshotDamaged(damaged) from None
    sums: dict[str, str] = header.sections if checked and header.sections else {}
    numbers = tempfile.TemporaryFile(dir=scratch)  # noqa: SIM115 (the index keeps it; closed with the snapshot)
    try:
        await _copy_section(reader, numbers, 8 * count, damaged, sums.get("keys"))
        await _copy_section(reader, numbers, 4 * count, damaged, sums.get("fps"))
        fps = array("I", [0]) * count
        numbers.seek(8 * count)
        if numbers.readinto(fps) != 4 * count:  # type: ignore[attr-defined]
            raise SnapshotDamaged(damaged)
        warned = array("q")
        if checked:
            warned.frombytes(await _copy_section(reader, io.BytesIO(), 8 * header.warned, damaged, sums.get("warned")))
        await reader.close()
        if sys.byteorder != "little":
            fps.byteswap()
            warned.byteswap()
        if any(warned[i] >= warned[i + 1] for i in range(len(warned) - 1)):
            raise SnapshotDamaged(damaged)
        try:
            index = MemberIndex(numbers, count)
        except KeysOutOfOrder:
            raise SnapshotDamaged(damaged) from None
    except BaseException:
        numbers.close()
        raise
    heading = len(MAGIC) + len(line) + 1 + (len(stated) + 1 if checked else 0)
    return Snapshot(header, index, fps, heading + 12 * count + 8 * len(warned), warned)


async def _copy_section(reader: _Reader, into: IO[bytes], size: int, damaged: str, checksum: str | None) -> bytes:
    """``size`` bytes of the stream written to ``into``, checked against the section's
    checksum (format 3). Returns what ``into`` holds when it is in memory (``BytesIO``)."""
    hasher = xxhash.xxh3_128()
    remaining = size
    while remaining:
        wanted = min(remaining, 1 << 20)
        piece = await reader.take(wanted)
        if len(piece) != wanted:  # the stream ended early
            raise SnapshotDamaged(damaged)
        hasher.update(piece)
        into.write(piece)
        remaining -= wanted
    if checksum is not None and hasher.hexdigest() != checksum:
        raise SnapshotDamaged(damaged)
    return into.getvalue() if isinstance(into, io.BytesIO) else b""


def _digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def _sections_valid(sections: object) -> bool:
    return isinstance(sections, dict) and all(isinstance(sections.get(name), str) for name in SECTIONS)


SECTIONS = ("keys", "fps", "warned", "emails")


async def copy_emails(store: SnapshotStore, snapshot: Snapshot, path: Path) -> Path:
    """The stored snapshot's emails section, into a local file (line ``i``: member ``i``),
    checked against its checksum (format 3)."""
    hasher = xxhash.xxh3_128()
    with path.open("wb") as out:
        async for chunk in store.read(snapshot.emails_at):
            hasher.update(chunk)
            out.write(chunk)
    sections = snapshot.header.sections
    if sections is not None and hasher.hexdigest() != sections.get("emails"):
        raise SnapshotDamaged(f"the snapshot {store.description} is damaged (its emails do not match their checksum); "
                              "delete it to start over (nobody was removed)")
    return path


class SnapshotWriter:
    """Writes a snapshot section by section into temporary files, then joins them."""

    def __init__(self, folder: Path):
        self._folder = folder
        self._keys = tempfile.NamedTemporaryFile(dir=folder, prefix="keys-")  # noqa: SIM115 (closed in finish)
        self._fps = tempfile.NamedTemporaryFile(dir=folder, prefix="fps-")  # noqa: SIM115
        self._emails = tempfile.NamedTemporaryFile(dir=folder, prefix="emails-")  # noqa: SIM115
        self._key_buffer, self._fp_buffer = array("q"), array("I")
        self._hashers = {name: xxhash.xxh3_128() for name in SECTIONS}
        self.members = 0
        self._last: int | None = None

    def member(self, key: int, fp: int) -> None:
        """In ascending key order."""
        if self._last is not None and key <= self._last:
            raise ValueError("snapshot members must come in ascending key order, each once")
        self._last = key
        self._key_buffer.append(key)
        self._fp_buffer.append(fp)
        self.members += 1
        if len(self._key_buffer) >= 65_536:
            self._flush()

    def email(self, line: bytes) -> None:
        """The email of the member just given to ``member``: its line, newline included."""
        self._hashers["emails"].update(line)
        self._emails.write(line)

    def members_from(self, keys: array, fps: array, emails: list[bytes]) -> None:
        """A run of members at once (old ones kept as they were), in ascending key order
        after those written before; ``emails`` are their lines, newline included."""
        if not keys:
            return
        if self._last is not None and keys[0] <= self._last:
            raise ValueError("snapshot members must come in ascending key order, each once")
        self._flush()
        self._key_buffer, self._fp_buffer = array("q", keys), array("I", fps)
        self._flush()
        hasher = self._hashers["emails"]
        for line in emails:
            hasher.update(line)
        self._emails.writelines(emails)
        self._last = keys[-1]
        self.members += len(keys)

    def _flush(self) -> None:
        if sys.byteorder != "little":
            self._key_buffer.byteswap()
            self._fp_buffer.byteswap()
        keys, fps = self._key_buffer.tobytes(), self._fp_buffer.tobytes()
        self._hashers["keys"].update(keys)
        self._hashers["fps"].update(fps)
        self._keys.write(keys)
        self._fps.write(fps)
        self._key_buffer, self._fp_buffer = array("q"), array("I")

    def finish(self, header: SnapshotHeader, warned: array | None = None) -> Path:
        """``warned``: keys of members whose row drew field warnings, ascending."""
        self._flush()
        warned_bytes = _little_endian(warned if warned is not None else array("q"))
        self._hashers["warned"].update(warned_bytes)
        header.members = self.members
        header.warned = len(warned_bytes) // 8
        header.sections = {name: hasher.hexdigest() for name, hasher in self._hashers.items()}
        path = self._folder / "snapshot.new"
        with path.open("wb") as out:
            line = orjson.dumps(asdict(header))
            out.write(MAGIC + line + b"\n" + _digest(line).encode() + b"\n")
            for section in (self._keys, self._fps, io.BytesIO(warned_bytes), self._emails):
                section.flush()
                section.seek(0)
                while chunk := section.read(1 << 20):
                    out.write(chunk)
                section.close()
        return path


def _little_endian(values: array) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    copy = array(values.typecode, values)
    copy.byteswap()
    return copy.tobytes()


class _Reader:
    """Exact-size reads over a chunk stream."""

    def __init__(self, chunks: AsyncIterator[bytes]):
        self._chunks = chunks
        self._buffer = b""
        self._done = False

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._done:
            try:
                self._buffer += await self._chunks.__anext__()
            except StopAsyncIteration:
                self._done = True

    async def take(self, size: int) -> bytes:
        await self._fill(size)
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return piece

    async def line(self, limit: int) -> bytes:
        while b"\n" not in self._buffer and len(self._buffer) <= limit and not self._done:
            await self._fill(len(self._buffer) + 1)
        line, found, rest = self._buffer.partition(b"\n")
        if not found:
            return b""
        self._buffer = rest
        return line

    async def close(self) -> None:
        closer: Any = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()
