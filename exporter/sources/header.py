"""The column names a source has now, without reading its rows: what the management API
compares an export's mapping with when it is saved. Reads what a run would read first
(a folder's newest run, its first part; a file's header), and nothing more."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError

from exporter.config import ExportDefinition
from exporter.errors import SourceError
from exporter.sources import open_segment
from exporter.sources.folders import BlobFolder
from exporter.sources.parts import SegmentPart, resolve_folder

if TYPE_CHECKING:
    from exporter.runs.service import ExportService


async def source_columns(service: ExportService, export: ExportDefinition) -> list[str] | None:
    """The header of the export's source; None when there is no segment there yet."""
    storage, container = service.storage, service.settings.segments_container
    if export.is_prefix:
        folder = BlobFolder(storage.blobs.url, container, export.source, storage.credential, storage.options)
        try:
            run = await resolve_folder(folder, export.entity)
        except SourceError:
            if not await _any_blob(service, export.source):
                return None
            raise
        if not run.parts:
            return None
        part: SegmentPart = run.parts[0]
        if part.columns:
            return list(part.columns)
        source = part.source
        encoding, delimiter, quoted = part.encoding or export.encoding, part.delimiter, part.quoted
    else:
        blob = storage.blobs.get_blob_client(container, export.source)
        try:
            properties = await blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
        source = storage.segment(container, export.source, properties.etag)
        encoding, delimiter, quoted = export.encoding, None, True
    segment = await open_segment(source, encoding=encoding, format=export.format, columns=export.columns,
                                 delimiter=delimiter, quoted=quoted)
    with contextlib.suppress(Exception):
        await segment.blocks.aclose()  # type: ignore[attr-defined]
    return list(segment.columns)


async def _any_blob(service: ExportService, prefix: str) -> bool:
    container = service.storage.blobs.get_container_client(service.settings.segments_container)
    try:
        async for _ in container.list_blobs(name_starts_with=prefix):
            return True
    except ResourceNotFoundError:
        return False
    return False
