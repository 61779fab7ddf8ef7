"""Run state, reports, rejects and checkpoints as blobs under ``{export}/{run_id}/``.

Everything a status request needs is in the reports container, so any instance can
answer for a run that another instance carries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import ContainerClient

from exporter.report import RunReport, utc_now
from exporter.runs.checkpoint import Checkpoint

FINISHED = ("succeeded", "partial", "failed")


@dataclass
class RunState:
    run_id: str
    export: str
    source: str  # blob path inside the segments container
    dry_run: bool
    trigger: str  # http | timer | blob
    status: str = "queued"  # queued | waiting | running | continuing | succeeded | partial | failed
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None  # when its first leg began
    updated_at: str = field(default_factory=utc_now)
    legs: int = 0
    counts: dict[str, int] | None = None
    error: str | None = None

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

    async def save_state(self, state: RunState) -> None:
        state.updated_at = utc_now()
        body = orjson.dumps(asdict(state))
        await self._put(f"{state.export}/{state.run_id}/state.json", body)
        latest = await self.latest(state.export)
        if latest is None or latest["run_id"] == state.run_id or latest["created_at"] <= state.created_at:
            await self._put(f"{state.export}/latest.json", body)  # the newest run, not the last one saved

    async def load_state(self, export: str, run_id: str) -> RunState | None:
        raw = await self._get(f"{export}/{run_id}/state.json")
        return RunState(**orjson.loads(raw)) if raw else None

    async def latest(self, export: str) -> dict[str, Any] | None:
        raw = await self._get(f"{export}/latest.json")
        return orjson.loads(raw) if raw else None

    async def save_report(self, report: RunReport) -> None:
        await self._put(f"{report.export}/{report.run_id}/report.json", report.to_json())

    async def load_report(self, export: str, run_id: str) -> dict[str, Any] | None:
        raw = await self._get(f"{export}/{run_id}/report.json")
        return orjson.loads(raw) if raw else None

    async def save_checkpoint(self, export: str, run_id: str, checkpoint: Checkpoint) -> None:
        checkpoint.dirty = False
        await self._put(f"{export}/{run_id}/checkpoint.json", checkpoint.to_json())

    async def load_checkpoint(self, export: str, run_id: str) -> Checkpoint:
        raw = await self._get(f"{export}/{run_id}/checkpoint.json")
        return Checkpoint.from_json(raw) if raw else Checkpoint()

    async def save_rejects(self, export: str, run_id: str, path: Path) -> str:
        """Upload the rejects CSV (streamed from disk); returns its blob URL."""
        blob = self.container.get_blob_client(f"{export}/{run_id}/rejects.csv")
        with path.open("rb") as data:
            await blob.upload_blob(data, overwrite=True)
        return blob.url

    async def _put(self, name: str, body: bytes) -> None:
        await self.container.get_blob_client(name).upload_blob(body, overwrite=True)

    async def _get(self, name: str) -> bytes | None:
        try:
            downloader = await self.container.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return None
        return await downloader.readall()
