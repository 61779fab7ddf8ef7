"""Run state, reports, rejects and checkpoints as blobs under ``{export}/{run_id}/``.

Everything a status request needs is in the reports container, so any instance can
answer for a run that another instance carries.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob.aio import ContainerClient

from exporter.report import RunReport, utc_now
from exporter.runs.checkpoint import Checkpoint

FINISHED = ("succeeded", "partial", "failed", "skipped")  # skipped: a blob event for a run already exported
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")  # as ``new_run_id`` makes them; nothing else names a run


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID.fullmatch(value) is not None


class FileTooLarge(Exception):
    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


class StateChanged(Exception):
    """Another worker wrote the run's state since it was read: it has claimed the leg."""


@dataclass
class RunState:
    run_id: str
    export: str
    source: str  # blob path or folder (ending in "/") inside the segments container; a blob event's blob
    dry_run: bool
    trigger: str  # http | timer | blob
    status: str = "queued"  # queued | waiting | running | continuing | succeeded | partial | failed | skipped
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None  # when its first leg began
    updated_at: str = field(default_factory=utc_now)
    legs: int = 0
    leg: int = 0  # the leg (its queue message's number) being carried or last carried
    counts: dict[str, int] | None = None
    error: str | None = None
    # Pinned by the first leg, so every leg reads the same file versions into the same list:
    parts: list[dict[str, Any]] | None = None  # the files of the run: name, label, etag, size, read options
    source_description: str | None = None  # the file, or the folder's run, for reports
    list_id: str | None = None
    mapping: dict[str, str] | None = None  # {"email": column, target: column, ...}
    options: dict[str, Any] | None = None  # phone_region, invalid_fields, encoding, format
    # What operators see of a run in progress (refreshed by its heartbeat) and after it:
    progress: dict[str, Any] | None = None
    jobs: int = 0  # Klaviyo jobs accepted
    throttled: int = 0  # 429s Klaviyo answered, over all legs

    @classmethod
    def from_json(cls, raw: bytes) -> RunState:
        data = orjson.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class RunStore:
    def __init__(self, container: ContainerClient):
        self.container = container

    async def ensure_container(self) -> None:
        try:
            await self.container.create_container()
        except ResourceExistsError:
            pass

    async def save_state(self, state: RunState, if_etag: str | None = None) -> str:
        """Write the state; with ``if_etag``, only if nobody wrote it since (else ``StateChanged``).
        Returns the new ETag."""
        state.updated_at = utc_now()
        body = orjson.dumps(asdict(state))
        blob = self.container.get_blob_client(_run_path(state.export, state.run_id, "state.json"))
        conditions: dict[str, Any] = {"etag": if_etag, "match_condition": MatchConditions.IfNotModified} if if_etag else {}
        try:
            written = await blob.upload_blob(body, overwrite=True, **conditions)
        except ResourceModifiedError:
            raise StateChanged(state.run_id) from None
        latest = await self.latest(state.export)
        if latest is None or latest["run_id"] == state.run_id or latest["created_at"] <= state.created_at:
            await self._put(f"{state.export}/latest.json", body)  # the newest run, not the last one saved
        return str(written["etag"])

    async def load_state(self, export: str, run_id: str) -> RunState | None:
        return (await self.load_state_tagged(export, run_id))[0]

    async def load_state_tagged(self, export: str, run_id: str) -> tuple[RunState | None, str | None]:
        """The state and its ETag, for a conditional write that claims the run's next leg."""
        if not is_run_id(run_id):
            return None, None
        try:
            downloader = await self.container.get_blob_client(_run_path(export, run_id, "state.json")).download_blob()
        except ResourceNotFoundError:
            return None, None
        return RunState.from_json(await downloader.readall()), downloader.properties.etag

    async def latest(self, export: str) -> dict[str, Any] | None:
        raw = await self._get(f"{export}/latest.json")
        return orjson.loads(raw) if raw else None

    async def exported_source(self, export: str) -> dict[str, Any] | None:
        """Which run of the source (its fingerprint) the export last started, and the run's id."""
        raw = await self._get(f"{export}/source.json")
        return orjson.loads(raw) if raw else None

    async def save_exported_source(self, export: str, fingerprint: str, run_id: str) -> None:
        await self._put(f"{export}/source.json", orjson.dumps({"fingerprint": fingerprint, "run_id": run_id}))

    async def save_report(self, report: RunReport) -> None:
        await self._put(_run_path(report.export, report.run_id, "report.json"), report.to_json())

    async def load_report(self, export: str, run_id: str) -> dict[str, Any] | None:
        raw = await self._get(_run_path(export, run_id, "report.json"))
        return orjson.loads(raw) if raw else None

    async def load_checkpoint(self, export: str, run_id: str) -> Checkpoint:
        """The run's checkpoint, bound to its blob: each ``save`` writes it there."""
        name = _run_path(export, run_id, "checkpoint.json")

        async def persist(body: bytes) -> None:
            await self._put(name, body)

        raw = await self._get(name)
        return Checkpoint.from_json(raw, persist) if raw else Checkpoint(persist)

    async def save_rejects(self, export: str, run_id: str, path: Path) -> str:
        """Upload the rejects CSV (streamed from disk); returns its blob URL."""
        return await self.save_file(export, run_id, path, "rejects.csv")

    async def save_file(self, export: str, run_id: str, path: Path, name: str) -> str:
        """Upload a file of the run (streamed from disk) into its folder; returns its blob URL."""
        blob = self.container.get_blob_client(_run_path(export, run_id, name))
        with path.open("rb") as data:
            await blob.upload_blob(data, overwrite=True)
        return blob.url

    async def recent(self, export: str, limit: int = 20) -> list[RunState]:
        """The export's newest runs, newest first (run ids begin with their start time)."""
        run_ids = []
        try:
            async for entry in self.container.walk_blobs(name_starts_with=f"{export}/", delimiter="/"):
                run_id = entry.name[len(export) + 1:].rstrip("/")
                if is_run_id(run_id):
                    run_ids.append(run_id)
        except ResourceNotFoundError:  # no run of any export yet: no reports container
            return []
        states = [await self.load_state(export, run_id) for run_id in sorted(run_ids, reverse=True)[:limit]]
        return [state for state in states if state is not None]

    async def load_file(self, export: str, run_id: str, name: str, max_bytes: int) -> bytes | None:
        """A file of the run (its rejects or preview); ``FileTooLarge`` past ``max_bytes``."""
        try:
            downloader = await self.container.get_blob_client(_run_path(export, run_id, name)).download_blob()
        except ResourceNotFoundError:
            return None
        if (downloader.size or 0) > max_bytes:
            raise FileTooLarge(downloader.size or 0)
        return await downloader.readall()

    async def _put(self, name: str, body: bytes) -> None:
        await self.container.get_blob_client(name).upload_blob(body, overwrite=True)

    async def _get(self, name: str) -> bytes | None:
        try:
            downloader = await self.container.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return None
        return await downloader.readall()


def snapshot_name(export: str) -> str:
    """The export's snapshot (what it has put in its list), beside its runs."""
    return f"{export}/snapshot.bin"


def _run_path(export: str, run_id: str, name: str) -> str:
    """Where a run's files live; a run id of any other shape can address nothing."""
    if not is_run_id(run_id):
        raise ValueError("not a run id")
    return f"{export}/{run_id}/{name}"
