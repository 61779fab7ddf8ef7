"""A run's first leg pins what the whole run reads and where it goes: each file's version and
size, the list, the mapping and the export's settings, so every later leg reads the same
versions into the same list, whatever is replaced or edited meanwhile. A blob event for a
run already exported, or for parts still arriving, does not go ahead."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from exporter.config import ExportDefinition
from exporter.errors import ExportError, SourceError
from exporter.mapping import FieldMapping
from exporter.mapping.consent import ConsentMapping
from exporter.report import utc_now
from exporter.runs.context import MAX_WAITS, RunContext
from exporter.runs.finishing import RunFinisher
from exporter.runs.lock import ExportLock
from exporter.runs.messages import RunMessage
from exporter.runs.store import RunState
from exporter.sources.files import BlobLocation
from exporter.sources.folders import BlobFolder
from exporter.sources.parts import SegmentPart, SegmentRun, resolve_folder
from exporter.sources.reach import reachable


class RunPinning:
    def __init__(self, context: RunContext, finisher: RunFinisher):
        self._context = context
        self._finisher = finisher

    async def pin(self, state: RunState, export: ExportDefinition, message: RunMessage, lock: ExportLock) -> bool:
        """The first leg fixes what the run reads and where it goes: each file's version (ETag)
        and size, the list and the mapping. Every later leg reads those versions only (a
        conditional read) into that list, so a replaced file or an edited export can
        never give a run half of one and half of another. False: the run does not go ahead
        (a blob event for a run already exported, or for parts still arriving)."""
        run = await self.resolve(export, state)
        if state.trigger == "blob":
            reason = await self.already_done(export, state, run)
            if reason is not None:
                await self._finisher.stand_down(state, lock, "skipped", reason)
                self._finisher.event("skipped", state)
                return False
        # Every start (timer, request, blob event) of a plain folder's run of part files waits
        # until the run has been quiet for settle_seconds: a run read while parts still arrive
        # is half a segment, and mirror mode would remove the other half. Waiting, not reading
        # the previous run: that one is older than what the list may already hold.
        settle = export.settle_seconds - (datetime.now(UTC).timestamp() - max(p.modified for p in run.parts))
        if reads_folder(export, state) and run.manifest is None and "/" in run.parts[0].label and settle > 0:
            if message.waits >= MAX_WAITS:
                raise ExportError(f"the newest run {run.description} kept changing for {MAX_WAITS} tries; "
                                  "nothing was read")
            await self._finisher.stand_down(state, lock, "waiting",  # part files still arriving: look again once quiet
                                   f"the run's part files changed {export.settle_seconds - settle:.0f} s ago; "
                                   f"reading once they have been quiet for {export.settle_seconds:g} s")
            await self._context.queue.send_message(replace(message, waits=message.waits + 1).encode(),
                                          visibility_timeout=math.ceil(settle))
            return False
        await self._context.store.save_exported_source(export.name, run.fingerprint(), state.run_id)
        state.parts = [part_document(part) for part in run.parts]
        state.source_description = run.description
        state.list_id, state.mapping = export.list_id, mapping_document(export.mapping)
        state.options = {"phone_region": export.mapping.phone_region, "invalid_fields": export.mapping.invalid_fields,
                         "encoding": export.encoding, "format": export.format, "columns": export.columns,
                         "mode": export.mode, "full_every": export.full_every,
                         "max_remove_fraction": export.max_remove_fraction,
                         "max_rejected_fraction": export.max_rejected_fraction,
                         "consent": consent_document(export.mapping), "identity": list(export.mapping.identity),
                         "types": export.mapping.types, "clear_emptied": export.clear_emptied}
        state.started_at = state.started_at or utc_now()
        return True

    async def resolve(self, export: ExportDefinition, state: RunState) -> SegmentRun:
        """The files of the run: a folder's newest run (for a folder export started by the
        timer, a request or any blob event in the folder), else the one blob named."""
        container = self._context.settings.segments_container
        if reads_folder(export, state):
            folder = BlobFolder(self._context.storage.blobs.url, container, export.source, self._context.storage.credential,
                                self._context.storage.options)
            return await resolve_folder(folder, export.entity)
        reachable(export.name, export.source, state.source)
        blob = self._context.storage.blobs.get_blob_client(container, state.source)
        try:
            properties = await blob.get_blob_properties()
        except ResourceNotFoundError:
            raise SourceError(f"the segment file {container}/{state.source} is gone") from None
        location = self._context.storage.segment(container, state.source, properties.etag)
        part = SegmentPart(location, state.source, properties.size, modified=properties.last_modified.timestamp())
        return SegmentRun(location.description, [part])

    async def already_done(self, export: ExportDefinition, state: RunState, run: SegmentRun) -> str | None:
        """Why a blob event needs no run: its blob is not in the run to export (a part the
        manifest does not list yet, an older run's file), or that very run was exported
        (events arrive at least once, in any order, one per part file)."""
        if export.is_prefix:
            names = {export.source + part.label for part in run.parts}
            if run.manifest is not None:
                names.add(export.source + run.manifest)
            if state.source not in names:
                why = "a CDM run starts when its manifest lists it" if run.manifest else "a newer file came after it"
                return f"{state.source} is not a file of the source's newest run ({run.description}); {why}"
        record = await self._context.store.exported_source(export.name)
        if record is None or record.get("fingerprint") != run.fingerprint():
            return None
        previous = await self._context.store.load_state(export.name, str(record.get("run_id")))
        if previous is not None and previous.status == "failed":
            return None  # that attempt failed: this event gets the run another one
        return f"run {record.get('run_id')} already exported this version of the source ({run.description})"

    def pinned_run(self, state: RunState) -> SegmentRun:
        if not state.parts:
            raise ExportError("the run's pinned source files are missing from its state")
        container = self._context.settings.segments_container
        parts = [SegmentPart(self._context.storage.segment(container, part["name"], part["etag"]), part["label"], part["size"],
                             part.get("columns"), part.get("delimiter"), part.get("encoding"),
                             quoted=part.get("quoted", True) is not False, types=part.get("types"))
                 for part in state.parts]
        return SegmentRun(state.source_description or state.source, parts)


def reads_folder(export: ExportDefinition, state: RunState) -> bool:
    """The run reads its folder's newest run, not one file a request named."""
    return export.is_prefix and (state.trigger == "blob" or state.source == export.source)


def part_document(part: SegmentPart) -> dict[str, Any]:
    assert isinstance(part.source, BlobLocation)
    return {"name": part.source.name, "label": part.label, "etag": part.source.etag, "size": part.size,
            "columns": part.columns, "delimiter": part.delimiter, "encoding": part.encoding, "quoted": part.quoted,
            "types": part.types}


def mapping_document(mapping: FieldMapping) -> dict[str, str]:
    return {"email": mapping.email_column, **mapping.fields}


def mapping_from(document: dict[str, str] | None, options: dict[str, Any]) -> FieldMapping:
    if not document or "email" not in document:
        raise ExportError("the run's pinned mapping is missing from its state")
    consent, identity, types = options.get("consent"), options.get("identity") or ["email"], options.get("types") or {}
    if not isinstance(identity, list) or not isinstance(types, dict):
        raise ExportError("the run's pinned mapping is damaged")
    return FieldMapping(document["email"], {k: v for k, v in document.items() if k != "email"},
                        options.get("phone_region"), options.get("invalid_fields", "drop"),
                        ConsentMapping.from_document(consent) if consent else None,
                        {str(k): str(v) for k, v in types.items()}, tuple(str(kind) for kind in identity))


def consent_document(mapping: FieldMapping) -> dict[str, dict[str, str]] | None:
    if mapping.consent is None:
        return None
    return {channel: {"column": c.column, "consented_at": c.consented_at} for channel, c in mapping.consent.channels.items()}
