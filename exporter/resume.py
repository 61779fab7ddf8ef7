"""The command line's resume ledger: an interrupted run goes on where it stopped.

The function app keeps each run's checkpoint (which jobs Klaviyo accepted, how the finished
ones went) and resumes a run from it; this gives the CLI the same ledger, kept as
``run-ledger.json`` in the export's state location beside its snapshot, so what a resumed run
will skip is a file a person can look at. It is written each time Klaviyo accepts a job
(before that sender takes another), kept when a run is interrupted or fails, and removed
when a run finishes.

A rerun resumes only the same run: the same source, in the same version (a local file's
size and modification time, a blob's ETag, every part of a folder's run), into the same
list with the same mapping and settings. Batching is deterministic and the snapshot only
changes when a run finishes, so the same run makes the same jobs, and the ledger's accepted
ones are not sent again. Anything else starts over, and says so.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from exporter.report import RunReport, new_run_id
from exporter.runs.checkpoint import Checkpoint, CheckpointDamaged
from exporter.sources.files import BlobLocation
from exporter.sources.parts import SegmentRun
from exporter.sync.converge import mapping_document

if TYPE_CHECKING:
    from exporter.pipeline import ExportPlan

LEDGER_NAME = "run-ledger.json"


class LedgerFile(Protocol):
    description: str

    async def read(self) -> bytes | None: ...

    async def write(self, data: bytes) -> None: ...

    async def delete(self) -> None: ...


class LocalLedgerFile:
    def __init__(self, folder: Path):
        self.path = folder / LEDGER_NAME
        self.description = str(self.path)

    async def read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    async def write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staged = self.path.with_name(f".{LEDGER_NAME}.{os.getpid()}.tmp")
        staged.write_bytes(data)
        os.replace(staged, self.path)  # a crash leaves the old ledger or the new one

    async def delete(self) -> None:
        self.path.unlink(missing_ok=True)


class BlobLedgerFile:
    def __init__(self, location: BlobLocation):
        self.location = location
        self.description = location.description

    async def read(self) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        async with self.location.client() as client:
            try:
                return bytes(await (await client.download_blob()).readall())
            except ResourceNotFoundError:
                return None

    async def write(self, data: bytes) -> None:
        async with self.location.client() as client:
            await client.upload_blob(data, overwrite=True)

    async def delete(self) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        async with self.location.client() as client:
            try:
                await client.delete_blob()
            except ResourceNotFoundError:
                pass


def run_fingerprint(plan: ExportPlan) -> str:
    """What makes two runs the same run: the source's version and every setting that shapes
    the jobs."""
    source = plan.source
    if isinstance(source, SegmentRun):
        version: object = [[p.label, p.source.etag if isinstance(p.source, BlobLocation) else None, p.size, p.modified]
                           for p in source.parts]
    elif isinstance(source, BlobLocation):
        version = [source.description, source.etag]
    else:
        stat = Path(source).stat()
        version = [str(Path(source).resolve()), stat.st_size, stat.st_mtime_ns]
    sync = plan.sync
    document = {"source": version, "list_id": plan.list_id, "mapping": mapping_document(plan.mapping),
                "encoding": plan.encoding, "format": plan.format, "columns": plan.columns, "entity": plan.entity,
                "mode": sync.mode if sync else None, "full": sync.full if sync else None}
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Resumption:
    """The run to carry out: a new one, or the interrupted one this command resumes."""

    run_id: str
    checkpoint: Checkpoint
    note: str | None  # what the summary says about resuming or starting over


async def resume_or_start(file: LedgerFile, fingerprint: str) -> Resumption:
    run_id = new_run_id()
    note = None
    raw = await file.read()
    if raw is not None:
        try:
            stored = orjson.loads(raw)
            if not isinstance(stored, dict) or not isinstance(stored.get("checkpoint"), dict) \
                    or not isinstance(stored.get("run_id"), str):
                raise ValueError("not a run ledger")
            previous, same = stored["run_id"], stored.get("fingerprint") == fingerprint
            checkpoint = Checkpoint.from_json(orjson.dumps(stored["checkpoint"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, CheckpointDamaged):
            note = f"the run ledger {file.description} is damaged; starting over (delete it to silence this)"
        else:
            if same:
                jobs = len(checkpoint.accepted_jobs)
                resumed = Resumption(previous, checkpoint, f"resuming run {previous}: {jobs} job(s) Klaviyo already "
                                                           "accepted are not sent again")
                _persist_to(file, resumed, fingerprint)
                return resumed
            note = (f"run {previous} of this export did not finish, but its source or settings changed since; "
                    "starting over")
    started = Resumption(run_id, Checkpoint(), note)
    _persist_to(file, started, fingerprint)
    return started


def _persist_to(file: LedgerFile, resumption: Resumption, fingerprint: str) -> None:
    head = orjson.dumps({"run_id": resumption.run_id, "fingerprint": fingerprint})[:-1]

    async def persist(body: bytes) -> None:
        await file.write(head + b',"checkpoint":' + body + b"}")

    resumption.checkpoint.persist = persist


async def settle_ledger(file: LedgerFile, report: RunReport) -> None:
    """Keep the ledger of a run that may be resumed (interrupted, failed); drop a finished one's."""
    if report.status in ("succeeded", "partial"):
        await file.delete()
