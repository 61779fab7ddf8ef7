"""One segment from several part files: the run a folder (CDM or plain) resolves to.

The parts are read one after another as one stream of row blocks, each opened only when
the one before it is done, so memory holds one part's chunk at a time. Line numbers
continue across parts (part 2's first line follows part 1's last), which keeps them unique
for de-duplication and the ledger; ``PartLines`` turns one back into the part file and its
own line for the rejects file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

from exporter.errors import SourceError
from exporter.sources.cdm import MANIFESTS, cdm_run, manifest_name
from exporter.sources.files import BlobLocation, blob_folder_address, is_blob_url
from exporter.sources.folders import BlobFolder, Folder, LocalFolder, newest_run, parent
from exporter.sources.part_lines import PartLines
from exporter.sources.rows import RowBlock, Segment


@dataclass(frozen=True)
class SegmentPart:
    source: str | BlobLocation  # a local path, or a blob pinned to its version
    label: str  # its name below the folder: what the rejects file names
    size: int
    columns: list[str] | None = None  # a headerless part's column names (from the manifest)
    delimiter: str | None = None
    encoding: str | None = None  # None: the export's
    modified: float = 0.0  # POSIX seconds: when the platform last wrote it
    quoted: bool = True  # quotes enclose CSV fields (a CDM manifest's QuoteStyle.None: they do not)
    types: dict[str, str] | None = None  # column -> the type a CDM manifest states for it


@dataclass(frozen=True)
class SegmentRun:
    """The files that make one run of a segment, in reading order."""

    description: str
    parts: list[SegmentPart]
    manifest: str | None = None  # model.json or manifest.cdm.json, for a CDM folder

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    def fingerprint(self) -> str:
        """Which files, in which versions: two events for the same run give the same one."""
        digest = hashlib.sha256()
        for part in self.parts:
            etag = part.source.etag if isinstance(part.source, BlobLocation) else None
            digest.update(f"{part.label}\0{etag}\0{part.size}\n".encode())
        return digest.hexdigest()


def folder_of(source: str) -> Folder | None:
    """The folder a CLI ``--source`` names, if it names one: a local directory, a blob URL
    ending in ``/``, or (local or blob) the ``model.json`` / ``manifest.cdm.json`` in it.
    A blob folder is read with the URL's SAS token, else the environment's credential."""
    if is_blob_url(source):
        url_path = urlsplit(source).path
        if not (url_path.endswith("/") or url_path.rpartition("/")[2] in MANIFESTS):
            return None
        account_url, container, prefix = blob_folder_address(source)
        sas = urlsplit(source).query
        return BlobFolder(account_url, container, prefix, sas or None)
    path = Path(source)
    if path.name in MANIFESTS and path.is_file():
        return LocalFolder(path.parent)
    return LocalFolder(path) if path.is_dir() else None


async def resolve_folder(folder: Folder, entity: str | None = None) -> SegmentRun:
    """The newest run in a folder: the partitions its CDM manifest lists, else the newest
    file or subfolder of part files (see ``folders``)."""
    entries = await folder.entries()
    manifest = manifest_name(entries)
    if manifest is not None:
        partitions = await cdm_run(folder, entries, manifest, entity)
        parts = [SegmentPart(folder.location(p.entry), p.entry.name, p.entry.size, p.columns, p.delimiter, p.encoding,
                             p.entry.modified, p.quoted, p.types) for p in partitions]
    else:
        if entity is not None:
            raise SourceError(f"an entity applies to a CDM folder (one holding model.json or manifest.cdm.json); "
                              f"{folder.description} holds neither")
        parts = [SegmentPart(folder.location(entry), entry.name, entry.size, modified=entry.modified)
                 for entry in newest_run(entries, folder.description)]
    run_folder = parent(parts[0].label)
    where = folder.description.rstrip("/") + "/" + (run_folder + "/" if run_folder else "")
    description = f"{where} ({len(parts)} part files)" if len(parts) > 1 else where + parts[0].label.rpartition("/")[2]
    return SegmentRun(description, parts, manifest)


async def open_parts(run: SegmentRun, opener: Callable[[SegmentPart], Awaitable[Segment]]) -> Segment:
    """``opener(part)`` opens one part as a segment (``open_segment`` with its options)."""
    parts = [part for part in run.parts if part.size] or run.parts[:1]  # an empty part holds no rows
    first = await opener(parts[0])
    stream = _PartStream(first, parts, opener, PartLines() if len(run.parts) > 1 else None)
    segment = stream.segment = Segment(first.columns, stream.blocks(), run.description, first.bytes_read,
                                       stream.lines, run.size, column_types=parts[0].types)
    return segment


class _PartStream:
    """Each part's blocks in turn, its line numbers moved past the parts before it."""

    def __init__(self, first: Segment, parts: list[SegmentPart], opener: Callable[[SegmentPart], Awaitable[Segment]],
                 lines: PartLines | None):
        self.first, self.parts, self.opener, self.lines = first, parts, opener, lines
        self.segment: Segment | None = None

    async def blocks(self) -> AsyncIterator[RowBlock]:
        offset = done_bytes = 0
        for number, part in enumerate(self.parts):
            current = self.first if number == 0 else await self.opener(part)
            if current.columns != self.first.columns:
                raise SourceError(f"part file {part.label} has other columns than {self.parts[0].label}; "
                                  "the parts of one run must share their columns")
            if self.lines is not None:
                self.lines.starts.append(offset)
                self.lines.labels.append(part.label)
            top = 0
            async for block in current.blocks:
                if block.lines:
                    top = max(top, block.lines[-1])
                if block.rejects:
                    top = max(top, max(r.line for r in block.rejects))
                if offset:
                    block.lines = [line + offset for line in block.lines]
                    block.rejects = [r._replace(line=r.line + offset) for r in block.rejects]
                    block.damage = [d._replace(line=d.line + offset) for d in block.damage]
                if self.segment is not None:
                    self.segment.bytes_read = done_bytes + current.bytes_read
                yield block
            done_bytes += current.bytes_read
            offset += top
