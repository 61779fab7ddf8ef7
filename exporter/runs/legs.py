"""Carrying a run out, leg by leg, from the runs queue: claim the leg (one delivery of a
message runs it, however often it arrives), run the export under the export's lock within
the time budget, and hand the rest to a continuation, or finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from exporter.errors import ExportError
from exporter.pipeline import ExportPlan, PipelineOptions, run_export
from exporter.rejects import RejectsFile
from exporter.runs.context import MAX_WAITS, WAIT_SECONDS, RunContext
from exporter.runs.finishing import RunFinisher, keep_earlier_work
from exporter.runs.klaviyo_access import KlaviyoAccess
from exporter.runs.lock import ExportLock
from exporter.runs.messages import RunMessage
from exporter.runs.pinning import RunPinning, mapping_from
from exporter.runs.progress import LatestProgress, leg_in_progress, remember, save_while_running
from exporter.runs.store import RunState, StateChanged, snapshot_name
from exporter.sources.files import BlobLocation
from exporter.sync.plan import SyncPlan
from exporter.sync.snapshot import BlobSnapshotStore
from exporter.verdict import DEFAULT_MAX_REJECTED_FRACTION

log = logging.getLogger("exporter.runs")

MAX_DEQUEUE = 5  # host.json maxDequeueCount: the last attempt marks the run failed


class LegRunner:
    def __init__(self, context: RunContext, pinning: RunPinning, finisher: RunFinisher, klaviyo: KlaviyoAccess):
        self._context = context
        self._pinning = pinning
        self._finisher = finisher
        self._klaviyo = klaviyo

    async def process(self, text: str, dequeue_count: int = 1) -> None:
        """Handle one runs-queue message: a first leg, a continuation, or a waiting start."""
        await self._context.prepare()
        try:
            message = RunMessage.decode(text)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            log.error("malformed runs-queue message dropped (%d characters)", len(text))
            return
        state, etag = await self._context.store.load_state_tagged(message.export, message.run_id)
        if state is None:
            log.error("runs-queue message for an unknown run dropped: export=%s", message.export)
            return  # every start saves the run's state before queueing it: this one was not started here
        if state.finished:
            return  # a duplicate delivery of a run already done
        if leg_in_progress(state, message):
            # The queue delivered this message again while a worker still carries the leg.
            # The lease cannot tell (same run, same lease id); the leg's heartbeat can. Look
            # again later, and take over then if that worker has died.
            await self._context.queue.send_message(message.encode(), visibility_timeout=WAIT_SECONDS)
            return
        if message.leg < state.leg or (message.leg == state.leg and state.status == "continuing"):
            log.info("stale runs-queue message dropped: run_id=%s leg=%d", message.run_id, message.leg)
            return  # that leg is done and its successor queued
        lock = ExportLock(self._context.store.container, message.export)
        if not await lock.acquire(message.run_id):
            await self.wait_for_turn(message, state)
            return
        state.status, state.leg, state.legs, state.error = "running", message.leg, message.leg + 1, None
        try:  # the claim: of two deliveries of one message racing to here, one writes first
            await self._context.store.save_state(state, if_etag=etag)
        except StateChanged:
            await self._context.queue.send_message(message.encode(), visibility_timeout=WAIT_SECONDS)
            return
        lock.keep_alive(message.run_id)
        try:
            await self.run_leg(message, state, lock)
        except ExportError as exc:  # bad config, missing key, changed file: retrying cannot help
            await self._finisher.fail(state, lock, str(exc))
        except Exception as exc:  # anything else (a Key Vault or storage outage): let the host retry, then poison
            state.status = "retrying"
            state.error = f"attempt {dequeue_count} failed: {exc.__class__.__name__}: {exc}"
            if dequeue_count >= MAX_DEQUEUE:
                await self._finisher.fail(state, lock, f"gave up after {dequeue_count} attempts; {state.error}")
            else:
                await self._context.store.save_state(state)
                await lock.stop_renewing()
            raise

    async def poisoned(self, text: str) -> None:
        """A message the host gave up on: make sure its run reads as failed."""
        try:
            message = RunMessage.decode(text)
        except (orjson.JSONDecodeError, TypeError, KeyError):
            log.error("malformed poison message dropped (%d characters)", len(text))
            return
        state = await self._context.store.load_state(message.export, message.run_id)
        if state is not None and not state.finished:
            lock = ExportLock(self._context.store.container, message.export)
            await self._finisher.fail(state, lock,
                                      f"the run's queue message was poisoned; last error: {state.error or 'unknown'}")

    async def wait_for_turn(self, message: RunMessage, state: RunState) -> None:
        if message.waits >= MAX_WAITS:
            state.status, state.error = "failed", f"export stayed busy for {MAX_WAITS * WAIT_SECONDS // 60} minutes"
            await self._context.store.save_state(state)
            self._finisher.event("failed", state)
            return
        state.status = "waiting"
        await self._context.store.save_state(state)
        await self._context.queue.send_message(replace(message, waits=message.waits + 1).encode(),
                                               visibility_timeout=WAIT_SECONDS)

    async def run_leg(self, message: RunMessage, state: RunState, lock: ExportLock) -> None:
        export = (await self._context.config()).export(message.export)
        if state.list_id is None:
            if not await self._pinning.pin(state, export, message, lock):
                return
            await self._context.store.save_state(state)
            self._finisher.event("started", state)
        remaining = self.time_left(state)
        loop = asyncio.get_running_loop()
        options = PipelineOptions(deadline=loop.time() + min(self._context.settings.time_budget_seconds, remaining),
                                  poll_interval=self._context.settings.poll_interval)
        pinned = state.options or {}
        checkpoint = await self._context.store.load_checkpoint(export.name, message.run_id)
        with tempfile.TemporaryDirectory(prefix="exporter-run-") as workdir:
            preview = Path(workdir) / "preview.csv"
            plan = ExportPlan(export.name, self._pinning.pinned_run(state), state.list_id or export.list_id,
                              mapping_from(state.mapping, pinned),
                              pinned.get("encoding", "utf-8"), pinned.get("format"), pinned.get("columns"),
                              sync=self.sync_plan(export.name, pinned, message, preview),
                              max_rejected_fraction=pinned.get("max_rejected_fraction", DEFAULT_MAX_REJECTED_FRACTION))
            rejects = RejectsFile(Path(workdir) / "rejects.csv")
            latest = LatestProgress()
            saver = asyncio.create_task(save_while_running(self._context.store, state, checkpoint, latest))
            try:
                async with self._klaviyo.client(export, message.dry_run) as klaviyo:
                    try:
                        report = await run_export(plan, klaviyo, rejects, run_id=message.run_id, options=options,
                                                  progress=latest,
                                                  credential=self._context.storage.credential, ledger=checkpoint)
                    finally:
                        state.throttled += klaviyo.throttled if klaviyo is not None else 0
            finally:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
            await checkpoint.save()
            if rejects.count:
                report.rejects = await self._context.store.save_rejects(export.name, message.run_id, rejects.path)
            if report.sync and report.sync.get("preview"):
                report.sync["preview"] = await self._context.store.save_file(export.name, message.run_id, preview, "preview.csv")
        report.started_at = state.started_at or report.started_at
        if report.status == "failed":
            keep_earlier_work(report, state, checkpoint)
        if latest.progress is not None:
            remember(state, latest.progress)  # where the leg ended, for a run that continues
        state.counts, state.jobs = asdict(report.counts), len(report.jobs)
        if report.status == "continuing":
            state.status = "continuing"
            await self._context.store.save_state(state)
            await self._context.queue.send_message(replace(message, leg=message.leg + 1).encode())
            await lock.stop_renewing()  # the continuation takes the same lease (same run id)
            self._finisher.event("handover", state)
            return
        await self._finisher.finish(state, report, lock)

    def sync_plan(self, export: str, pinned: dict[str, Any], message: RunMessage, preview: Path) -> SyncPlan:
        """The run's sync settings as its first leg pinned them; the snapshot beside its runs."""
        location = BlobLocation(self._context.storage.blobs.url, self._context.settings.reports_container, snapshot_name(export),
                                self._context.storage.credential, options=self._context.storage.options)
        return SyncPlan(BlobSnapshotStore(location), pinned.get("mode", "add"), message.full,
                        pinned.get("full_every", 0), message.allow_mass_removal, pinned.get("max_remove_fraction", 0.5),
                        preview if message.dry_run else None, pinned.get("clear_emptied") is True)

    def time_left(self, state: RunState) -> float:
        """Seconds left before the run's overall deadline; past it the run fails, freeing its export."""
        started = datetime.fromisoformat(state.started_at or state.created_at)
        left = self._context.settings.run_deadline_seconds - (datetime.now(UTC) - started).total_seconds()
        if left <= 0:
            hours = self._context.settings.run_deadline_seconds / 3600
            raise ExportError(f"the run passed its deadline of {hours:g} hour(s) without finishing "
                              "(RUN_DEADLINE_SECONDS); start a new run")
        return left
