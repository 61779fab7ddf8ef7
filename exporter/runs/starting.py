"""Starting runs: every start (a request, the timer, a dropped file) becomes a queued run of
one export, or a refusal that changes nothing."""

from __future__ import annotations

import logging

from azure.core.exceptions import AzureError

from exporter.errors import ExportError, TransientError
from exporter.report import new_run_id
from exporter.runs.context import WAIT_SECONDS, RunContext
from exporter.runs.lock import ExportLock
from exporter.runs.messages import RunMessage, StartResult
from exporter.runs.store import RunState
from exporter.sources.reach import OutOfReach, checked_blob_name, reachable

log = logging.getLogger("exporter.runs")


class RunStarter:
    def __init__(self, context: RunContext):
        self._context = context

    async def start(self, name: str, *, dry_run: bool = False, source: str | None = None,
                    trigger: str = "http", wait_if_busy: bool = False, full: bool = False,
                    allow_mass_removal: bool = False) -> StartResult:
        """Queue a run of one export. Busy export: refused, or (``wait_if_busy``) queued to
        start once the current run ends, so a dropped file is never lost. A refused start
        (unknown export, bad source) changes nothing: storage is prepared only for a run."""
        export = (await self._context.config()).export(name)
        if source is not None and export.is_prefix and export.mode == "mirror" and trigger == "http":
            raise ExportError(f"export {name!r} mirrors its folder's newest run: a run reads the whole run, never a "
                              "file named in the request (half a segment would remove the other half's members)")
        if source is not None:
            path = await self._check_source(reachable(export.name, export.source, source))
        else:
            path = export.source  # a folder's newest run is found when the run begins
        await self._context.prepare()
        run_id = new_run_id()
        lock = ExportLock(self._context.store.container, export.name)
        message = RunMessage(run_id, export.name, path, dry_run, full=full, allow_mass_removal=allow_mass_removal)
        if not await lock.acquire(run_id):
            holder = await lock.holder()
            if not wait_if_busy:
                return StartResult(False, holder or "unknown", export.name)
            await self._context.store.save_state(RunState(run_id, export.name, path, dry_run, trigger, status="waiting"))
            await self._context.queue.send_message(message.encode(), visibility_timeout=WAIT_SECONDS)
            return StartResult(True, run_id, export.name)
        await self._context.store.save_state(RunState(run_id, export.name, path, dry_run, trigger))
        await self._context.queue.send_message(message.encode())
        return StartResult(True, run_id, export.name)

    async def run_scheduled(self) -> list[StartResult]:
        results = []
        for export in (await self._context.config()).enabled():
            try:
                result = await self.start(export.name, trigger="timer")
            except ExportError as exc:
                log.error("scheduled export not started: export=%s reason=%s", export.name, exc)
                continue
            if not result.started:
                log.info("scheduled export skipped, still running: export=%s run_id=%s", export.name, result.run_id)
            results.append(result)
        return results

    async def segment_dropped(self, blob_name: str) -> list[StartResult]:
        """``blob_name`` as the trigger gives it: ``{container}/{path}``. Starts each enabled
        export the blob belongs to (several, for a CDM folder whose entities feed several)."""
        container, _, path = blob_name.partition("/")
        if container != self._context.settings.segments_container or not path:
            log.warning("blob event outside the segments container ignored")
            return []
        try:
            checked_blob_name(path)
        except OutOfReach as exc:
            log.warning("blob event ignored: %s", exc)
            return []
        exports = (await self._context.config()).exports_for_blob(path)
        if not exports:
            log.info("segment file claimed by no export, ignored: %s", path)
        results = []
        for export in exports:
            if not export.enabled:
                log.info("segment file for disabled export ignored: export=%s", export.name)
                continue
            results.append(await self.start(export.name, source=path, trigger="blob", wait_if_busy=True))
        return results

    async def _check_source(self, path: str) -> str:
        blob = self._context.storage.blobs.get_blob_client(self._context.settings.segments_container, path)
        try:
            exists = await blob.exists()
        except AzureError as exc:
            raise TransientError(f"cannot reach the segments container ({exc.__class__.__name__})") from None
        if not exists:
            raise ExportError(f"no segment file at {self._context.settings.segments_container}/{path}")
        return path
