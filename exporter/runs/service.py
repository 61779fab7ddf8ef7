"""The function app's behaviour, free of ``azure.functions``: start runs, carry them out
leg by leg from the queue, and answer for them.

Every start (HTTP, timer, blob drop) becomes a message on the runs queue; a queue
worker runs it under the export's lock with a time budget, checkpointing as Klaviyo
accepts jobs, and hands what is left to a continuation message when the budget runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from exporter.azure_storage import StorageClients
from exporter.config import EXPORT_NAME, ConfigError, ExportDefinition, ExportsConfig
from exporter.errors import ExportError, SourceError, TransientError
from exporter.klaviyo.accounts import LimitScope, limit_scope
from exporter.klaviyo.auth import ApiKeySource, StaticApiKey
from exporter.klaviyo.client import KlaviyoClient, new_session
from exporter.klaviyo.limits import BULK_IMPORT_RATE, MAX_PROFILES_PER_JOB
from exporter.klaviyo.ratelimit import rate_floor_seconds
from exporter.klaviyo.shared_limits import BlobSchedule, SharedRateLimiter, shared_limiters
from exporter.mapping import FieldMapping
from exporter.mapping.consent import ConsentMapping
from exporter.pipeline import ExportPlan, PipelineOptions, Progress, run_export
from exporter.rejects import RejectsFile
from exporter.report import Counts, RunReport, new_run_id, utc_now
from exporter.runs.checkpoint import Checkpoint
from exporter.runs.events import report_event, run_event
from exporter.runs.lock import ExportLock
from exporter.runs.store import RunState, RunStore, StateChanged, is_run_id, snapshot_name
from exporter.sources.files import BlobLocation
from exporter.sources.folders import BlobFolder
from exporter.sources.parts import SegmentPart, SegmentRun, resolve_folder
from exporter.sources.reach import OutOfReach, checked_blob_name, reachable
from exporter.sync.plan import SyncPlan
from exporter.sync.snapshot import BlobSnapshotStore
from exporter.verdict import DEFAULT_MAX_REJECTED_FRACTION, FAILED

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("exporter.runs")

MAX_WAITS = 60  # a start that finds its export busy retries every WAIT_SECONDS, up to an hour
WAIT_SECONDS = 60
MAX_DEQUEUE = 5  # host.json maxDequeueCount: the last attempt marks the run failed
HEARTBEAT_SECONDS = 5  # a running leg saves its state this often...
HEARTBEAT_STALE_SECONDS = 90  # ...so one silent this long has died; well past host.json's 30 s retry delay


@dataclass(frozen=True)
class RunMessage:
    run_id: str
    export: str
    source: str
    dry_run: bool = False
    leg: int = 0
    waits: int = 0
    full: bool = False  # resend every member
    allow_mass_removal: bool = False  # mirror mode: past the guard

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, text: str) -> RunMessage:
        """A message from the queue, checked field by field (``ValueError`` if anything is off):
        whoever can write to the queue must not be able to address another run's files."""
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        message = cls(**{k: data[k] for k in ("run_id", "export", "source", "dry_run", "leg", "waits", "full",
                                              "allow_mass_removal") if k in data})
        if not (is_run_id(message.run_id) and isinstance(message.export, str) and EXPORT_NAME.fullmatch(message.export)
                and isinstance(message.source, str) and isinstance(message.dry_run, bool)
                and isinstance(message.full, bool) and isinstance(message.allow_mass_removal, bool)
                and _count(message.leg) and _count(message.waits)):
            raise ValueError("a field is missing or of the wrong shape")
        return message


@dataclass(frozen=True)
class StartResult:
    started: bool
    run_id: str  # the new run's id, or the id of the run that holds the export
    export: str


@dataclass(frozen=True)
class ServiceSettings:
    segments_container: str = "segments"
    reports_container: str = "reports"
    runs_queue: str = "export-runs"
    klaviyo_base_url: str = "https://a.klaviyo.com"
    time_budget_seconds: float = 1500.0
    run_deadline_seconds: float = 6 * 3600.0  # a run still going after this fails and frees its export
    poll_interval: float = 1.0


KeySourceFactory = Callable[[ExportDefinition], Awaitable[ApiKeySource]]


class ExportService:
    def __init__(self, storage: StorageClients, load_config: Callable[[], Awaitable[ExportsConfig]],
                 key_source: KeySourceFactory, settings: ServiceSettings):
        self.storage = storage
        self.settings = settings
        self._load_config = load_config
        self._key_source = key_source
        self.store = RunStore(storage.blobs.get_container_client(settings.reports_container))
        self.queue = storage.queue(settings.runs_queue)
        self._session: aiohttp.ClientSession | None = None
        # Klaviyo's limits are the account's: every run on one account, in any process or instance, reserves
        # its requests in one schedule per tier in the reports container (klaviyo.shared_limits).
        self._limiters: dict[str, dict[str, SharedRateLimiter]] = {}
        self._scopes: dict[str, LimitScope] = {}  # connection -> the account its key belongs to
        self._ready = False

    async def config(self) -> ExportsConfig:
        return await self._load_config()

    async def _prepare(self) -> None:
        if not self._ready:
            await self.store.ensure_container()
            with contextlib.suppress(ResourceExistsError):
                await self.queue.create_queue()
            self._ready = True

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.queue.close()

    # ---- starting runs -------------------------------------------------------------

    async def start(self, name: str, *, dry_run: bool = False, source: str | None = None,
                    trigger: str = "http", wait_if_busy: bool = False, full: bool = False,
                    allow_mass_removal: bool = False) -> StartResult:
        """Queue a run of one export. Busy export: refused, or (``wait_if_busy``) queued to
        start once the current run ends, so a dropped file is never lost. A refused start
        (unknown export, bad source) changes nothing: storage is prepared only for a run."""
        export = (await self.config()).export(name)
        if source is not None and export.is_prefix and export.mode == "mirror" and trigger == "http":
            raise ExportError(f"export {name!r} mirrors its folder's newest run: a run reads the whole run, never a "
                              "file named in the request (half a segment would remove the other half's members)")
        if source is not None:
            path = await self._check_source(reachable(export.name, export.source, source))
        else:
            path = export.source  # a folder's newest run is found when the run begins
        await self._prepare()
        run_id = new_run_id()
        lock = ExportLock(self.store.container, export.name)
        message = RunMessage(run_id, export.name, path, dry_run, full=full, allow_mass_removal=allow_mass_removal)
        if not await lock.acquire(run_id):
            holder = await lock.holder()
            if not wait_if_busy:
                return StartResult(False, holder or "unknown", export.name)
            await self.store.save_state(RunState(run_id, export.name, path, dry_run, trigger, status="waiting"))
            await self.queue.send_message(message.encode(), visibility_timeout=WAIT_SECONDS)
            return StartResult(True, run_id, export.name)
        await self.store.save_state(RunState(run_id, export.name, path, dry_run, trigger))
        await self.queue.send_message(message.encode())
        return StartResult(True, run_id, export.name)

    async def run_scheduled(self) -> list[StartResult]:
        results = []
        for export in (await self.config()).enabled():
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
        if container != self.settings.segments_container or not path:
            log.warning("blob event outside the segments container ignored")
            return []
        try:
            checked_blob_name(path)
        except OutOfReach as exc:
            log.warning("blob event ignored: %s", exc)
            return []
        exports = (await self.config()).exports_for_blob(path)
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
        blob = self.storage.blobs.get_blob_client(self.settings.segments_container, path)
        try:
            exists = await blob.exists()
        except AzureError as exc:
            raise TransientError(f"cannot reach the segments container ({exc.__class__.__name__})") from None
        if not exists:
            raise ExportError(f"no segment file at {self.settings.segments_container}/{path}")
        return path

    # ---- carrying runs out ---------------------------------------------------------

    async def process(self, text: str, dequeue_count: int = 1) -> None:
        """Handle one runs-queue message: a first leg, a continuation, or a waiting start."""
        await self._prepare()
        try:
            message = RunMessage.decode(text)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            log.error("malformed runs-queue message dropped (%d characters)", len(text))
            return
        state, etag = await self.store.load_state_tagged(message.export, message.run_id)
        if state is None:
            log.error("runs-queue message for an unknown run dropped: export=%s", message.export)
            return  # every start saves the run's state before queueing it: this one was not started here
        if state.finished:
            return  # a duplicate delivery of a run already done
        if _leg_in_progress(state, message):
            # The queue delivered this message again while a worker still carries the leg.
            # The lease cannot tell (same run, same lease id); the leg's heartbeat can. Look
            # again later, and take over then if that worker has died.
            await self.queue.send_message(message.encode(), visibility_timeout=WAIT_SECONDS)
            return
        if message.leg < state.leg or (message.leg == state.leg and state.status == "continuing"):
            log.info("stale runs-queue message dropped: run_id=%s leg=%d", message.run_id, message.leg)
            return  # that leg is done and its successor queued
        lock = ExportLock(self.store.container, message.export)
        if not await lock.acquire(message.run_id):
            await self._wait_for_turn(message, state)
            return
        state.status, state.leg, state.legs, state.error = "running", message.leg, message.leg + 1, None
        try:  # the claim: of two deliveries of one message racing to here, one writes first
            await self.store.save_state(state, if_etag=etag)
        except StateChanged:
            await self.queue.send_message(message.encode(), visibility_timeout=WAIT_SECONDS)
            return
        lock.keep_alive(message.run_id)
        try:
            await self._run_leg(message, state, lock)
        except ExportError as exc:  # bad config, missing key, changed file: retrying cannot help
            await self._fail(state, lock, str(exc))
        except Exception as exc:  # anything else (a Key Vault or storage outage): let the host retry, then poison
            state.status = "retrying"
            state.error = f"attempt {dequeue_count} failed: {exc.__class__.__name__}: {exc}"
            if dequeue_count >= MAX_DEQUEUE:
                await self._fail(state, lock, f"gave up after {dequeue_count} attempts; {state.error}")
            else:
                await self.store.save_state(state)
                await lock.stop_renewing()
            raise

    async def poisoned(self, text: str) -> None:
        """A message the host gave up on: make sure its run reads as failed."""
        try:
            message = RunMessage.decode(text)
        except (orjson.JSONDecodeError, TypeError, KeyError):
            log.error("malformed poison message dropped (%d characters)", len(text))
            return
        state = await self.store.load_state(message.export, message.run_id)
        if state is not None and not state.finished:
            lock = ExportLock(self.store.container, message.export)
            await self._fail(state, lock, f"the run's queue message was poisoned; last error: {state.error or 'unknown'}")

    async def _wait_for_turn(self, message: RunMessage, state: RunState) -> None:
        if message.waits >= MAX_WAITS:
            state.status, state.error = "failed", f"export stayed busy for {MAX_WAITS * WAIT_SECONDS // 60} minutes"
            await self.store.save_state(state)
            self._event("failed", state)
            return
        state.status = "waiting"
        await self.store.save_state(state)
        await self.queue.send_message(replace(message, waits=message.waits + 1).encode(), visibility_timeout=WAIT_SECONDS)

    async def _run_leg(self, message: RunMessage, state: RunState, lock: ExportLock) -> None:
        export = (await self.config()).export(message.export)
        if state.list_id is None:
            if not await self._pin(state, export, message, lock):
                return
            await self.store.save_state(state)
            self._event("started", state)
        remaining = self._time_left(state)
        loop = asyncio.get_running_loop()
        options = PipelineOptions(deadline=loop.time() + min(self.settings.time_budget_seconds, remaining),
                                  poll_interval=self.settings.poll_interval)
        pinned = state.options or {}
        checkpoint = await self.store.load_checkpoint(export.name, message.run_id)
        with tempfile.TemporaryDirectory(prefix="exporter-run-") as workdir:
            preview = Path(workdir) / "preview.csv"
            plan = ExportPlan(export.name, self._pinned_run(state), state.list_id or export.list_id,
                              _mapping_from(state.mapping, pinned),
                              pinned.get("encoding", "utf-8"), pinned.get("format"), pinned.get("columns"),
                              sync=self._sync_plan(export.name, pinned, message, preview),
                              max_rejected_fraction=pinned.get("max_rejected_fraction", DEFAULT_MAX_REJECTED_FRACTION))
            rejects = RejectsFile(Path(workdir) / "rejects.csv")
            latest = _LatestProgress()
            saver = asyncio.create_task(self._save_while_running(state, checkpoint, latest))
            try:
                async with self._klaviyo(export, message.dry_run) as klaviyo:
                    try:
                        report = await run_export(plan, klaviyo, rejects, run_id=message.run_id, options=options,
                                                  progress=latest,
                                                  credential=self.storage.credential, ledger=checkpoint)
                    finally:
                        state.throttled += klaviyo.throttled if klaviyo is not None else 0
            finally:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
            await checkpoint.save()
            if rejects.count:
                report.rejects = await self.store.save_rejects(export.name, message.run_id, rejects.path)
            if report.sync and report.sync.get("preview"):
                report.sync["preview"] = await self.store.save_file(export.name, message.run_id, preview, "preview.csv")
        report.started_at = state.started_at or report.started_at
        if report.status == "failed":
            _keep_earlier_work(report, state, checkpoint)
        if latest.progress is not None:
            _remember(state, latest.progress)  # where the leg ended, for a run that continues
        state.counts, state.jobs = asdict(report.counts), len(report.jobs)
        if report.status == "continuing":
            state.status = "continuing"
            await self.store.save_state(state)
            await self.queue.send_message(replace(message, leg=message.leg + 1).encode())
            await lock.stop_renewing()  # the continuation takes the same lease (same run id)
            self._event("handover", state)
            return
        await self._finish(state, report, lock)

    async def _pin(self, state: RunState, export: ExportDefinition, message: RunMessage, lock: ExportLock) -> bool:
        """The first leg fixes what the run reads and where it goes: each file's version (ETag)
        and size, the list and the mapping. Every later leg reads those versions only (a
        conditional read) into that list, so a replaced file or an edited export can
        never give a run half of one and half of another. False: the run does not go ahead
        (a blob event for a run already exported, or for parts still arriving)."""
        run = await self._resolve(export, state)
        if state.trigger == "blob":
            reason = await self._already_done(export, state, run)
            if reason is not None:
                await self._stand_down(state, lock, "skipped", reason)
                self._event("skipped", state)
                return False
        # Every start (timer, request, blob event) of a plain folder's run of part files waits
        # until the run has been quiet for settle_seconds: a run read while parts still arrive
        # is half a segment, and mirror mode would remove the other half. Waiting, not reading
        # the previous run: that one is older than what the list may already hold.
        settle = export.settle_seconds - (datetime.now(UTC).timestamp() - max(p.modified for p in run.parts))
        if self._reads_folder(export, state) and run.manifest is None and "/" in run.parts[0].label and settle > 0:
            if message.waits >= MAX_WAITS:
                raise ExportError(f"the newest run {run.description} kept changing for {MAX_WAITS} tries; "
                                  "nothing was read")
            await self._stand_down(state, lock, "waiting",  # part files still arriving: look again once quiet
                                   f"the run's part files changed {export.settle_seconds - settle:.0f} s ago; "
                                   f"reading once they have been quiet for {export.settle_seconds:g} s")
            await self.queue.send_message(replace(message, waits=message.waits + 1).encode(),
                                          visibility_timeout=math.ceil(settle))
            return False
        await self.store.save_exported_source(export.name, run.fingerprint(), state.run_id)
        state.parts = [_part_document(part) for part in run.parts]
        state.source_description = run.description
        state.list_id, state.mapping = export.list_id, _mapping_document(export.mapping)
        state.options = {"phone_region": export.mapping.phone_region, "invalid_fields": export.mapping.invalid_fields,
                         "encoding": export.encoding, "format": export.format, "columns": export.columns,
                         "mode": export.mode, "full_every": export.full_every,
                         "max_remove_fraction": export.max_remove_fraction,
                         "max_rejected_fraction": export.max_rejected_fraction,
                         "consent": _consent_document(export.mapping), "identity": list(export.mapping.identity),
                         "types": export.mapping.types, "clear_emptied": export.clear_emptied}
        state.started_at = state.started_at or utc_now()
        return True

    async def _stand_down(self, state: RunState, lock: ExportLock, status: str, reason: str | None = None) -> None:
        """The run does not go ahead in this leg: say why, and free the export."""
        state.status, state.error = status, reason
        await self.store.save_state(state)
        await lock.release(state.run_id)

    async def _resolve(self, export: ExportDefinition, state: RunState) -> SegmentRun:
        """The files of the run: a folder's newest run (for a folder export started by the
        timer, a request or any blob event in the folder), else the one blob named."""
        container = self.settings.segments_container
        if self._reads_folder(export, state):
            folder = BlobFolder(self.storage.blobs.url, container, export.source, self.storage.credential,
                                self.storage.options)
            return await resolve_folder(folder, export.entity)
        reachable(export.name, export.source, state.source)
        blob = self.storage.blobs.get_blob_client(container, state.source)
        try:
            properties = await blob.get_blob_properties()
        except ResourceNotFoundError:
            raise SourceError(f"the segment file {container}/{state.source} is gone") from None
        location = self.storage.segment(container, state.source, properties.etag)
        part = SegmentPart(location, state.source, properties.size, modified=properties.last_modified.timestamp())
        return SegmentRun(location.description, [part])

    @staticmethod
    def _reads_folder(export: ExportDefinition, state: RunState) -> bool:
        """The run reads its folder's newest run, not one file a request named."""
        return export.is_prefix and (state.trigger == "blob" or state.source == export.source)

    async def _already_done(self, export: ExportDefinition, state: RunState, run: SegmentRun) -> str | None:
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
        record = await self.store.exported_source(export.name)
        if record is None or record.get("fingerprint") != run.fingerprint():
            return None
        previous = await self.store.load_state(export.name, str(record.get("run_id")))
        if previous is not None and previous.status == "failed":
            return None  # that attempt failed: this event gets the run another one
        return f"run {record.get('run_id')} already exported this version of the source ({run.description})"

    def _sync_plan(self, export: str, pinned: dict[str, Any], message: RunMessage, preview: Path) -> SyncPlan:
        """The run's sync settings as its first leg pinned them; the snapshot beside its runs."""
        location = BlobLocation(self.storage.blobs.url, self.settings.reports_container, snapshot_name(export),
                                self.storage.credential, options=self.storage.options)
        return SyncPlan(BlobSnapshotStore(location), pinned.get("mode", "add"), message.full,
                        pinned.get("full_every", 0), message.allow_mass_removal, pinned.get("max_remove_fraction", 0.5),
                        preview if message.dry_run else None, pinned.get("clear_emptied") is True)

    def _pinned_run(self, state: RunState) -> SegmentRun:
        if not state.parts:
            raise ExportError("the run's pinned source files are missing from its state")
        container = self.settings.segments_container
        parts = [SegmentPart(self.storage.segment(container, part["name"], part["etag"]), part["label"], part["size"],
                             part.get("columns"), part.get("delimiter"), part.get("encoding"),
                             quoted=part.get("quoted", True) is not False, types=part.get("types"))
                 for part in state.parts]
        return SegmentRun(state.source_description or state.source, parts)

    def _time_left(self, state: RunState) -> float:
        """Seconds left before the run's overall deadline; past it the run fails, freeing its export."""
        started = datetime.fromisoformat(state.started_at or state.created_at)
        left = self.settings.run_deadline_seconds - (datetime.now(UTC) - started).total_seconds()
        if left <= 0:
            hours = self.settings.run_deadline_seconds / 3600
            raise ExportError(f"the run passed its deadline of {hours:g} hour(s) without finishing "
                              "(RUN_DEADLINE_SECONDS); start a new run")
        return left

    async def _finish(self, state: RunState, report: RunReport, lock: ExportLock) -> None:
        await self.store.save_report(report)
        state.status, state.error = report.status, report.error
        await self.store.save_state(state)
        await lock.release(state.run_id)
        report_event(report, leg=state.leg, trigger=state.trigger, throttled=state.throttled)

    def _event(self, event: str, state: RunState) -> None:
        run_event(event, export=state.export, run_id=state.run_id, leg=state.leg, trigger=state.trigger,
                  status=state.status, dry_run=state.dry_run, counts=state.counts, started_at=state.started_at,
                  jobs=state.jobs, throttled=state.throttled, error=state.error)

    async def _fail(self, state: RunState, lock: ExportLock, reason: str) -> None:
        report = RunReport(state.run_id, state.export, state.source, state.list_id or "",
                           state.started_at or state.created_at, dry_run=state.dry_run)
        if not report.list_id:
            with contextlib.suppress(ConfigError):
                report.list_id = (await self.config()).export(state.export).list_id
        if state.counts:
            report.counts = Counts(**state.counts)
        report.finish(error=reason)
        report.verdict = FAILED.name
        await self._finish(state, report, lock)

    async def _save_while_running(self, state: RunState, checkpoint: Checkpoint, latest: _LatestProgress) -> None:
        """The leg's heartbeat: progress and settled jobs every few seconds (acceptances are
        saved as they happen, by the senders)."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await checkpoint.save()
            if latest.progress is not None:
                _remember(state, latest.progress)
            await self.store.save_state(state)

    @contextlib.asynccontextmanager
    async def _klaviyo(self, export: ExportDefinition, dry_run: bool) -> Any:
        if dry_run:
            yield None
            return
        if self._session is None or self._session.closed:
            self._session = new_session(64)
        key = await self._key_source(export)
        connection = export.connection
        if connection.name not in self._scopes:
            self._scopes[connection.name] = await limit_scope(self.settings.klaviyo_base_url, key, connection.name,
                                                              connection.klaviyo_account)
        scope = self._scopes[connection.name]
        container = self.store.container
        limiters = self._limiters.setdefault(scope.name, shared_limiters(lambda name: BlobSchedule(container, name),
                                                                         scope.name))
        async with KlaviyoClient(key, self.settings.klaviyo_base_url, session=self._session, limiter=limiters["import"],
                                 tier_limiters=dict(limiters)) as client:
            client.limits_note = scope.note
            yield client

    # ---- answering for runs --------------------------------------------------------

    async def status(self, name: str, run_id: str) -> dict[str, Any] | None:
        (await self.config()).export(name)
        if not is_run_id(run_id):
            return None  # nothing else names a run, nor another export's files
        state = await self.store.load_state(name, run_id)
        if state is None:
            return None
        answer: dict[str, Any] = asdict(state)
        if state.finished:
            answer["report"] = await self.store.load_report(name, run_id)
        return answer

    async def overview(self) -> list[dict[str, Any]]:
        exports = []
        for export in (await self.config()).exports.values():
            exports.append({"name": export.name, "connection": export.connection.display_name,
                            "source": export.source, "list_id": export.list_id, "enabled": export.enabled,
                            "last_run": await self.store.latest(export.name)})
        return exports


def _keep_earlier_work(report: RunReport, state: RunState, checkpoint: Checkpoint) -> None:
    """A leg that fails may have failed before it replayed what earlier legs and attempts did:
    its report keeps their counts (each count only grows as a run goes on) and every job
    Klaviyo accepted, so a failed run never reads as if nothing reached Klaviyo."""
    earlier = Counts(**state.counts) if state.counts else Counts()
    for name, value in asdict(earlier).items():
        if value > getattr(report.counts, name):
            setattr(report.counts, name, value)
    report.counts.settle_unsent()
    accepted = [a.job_id for _, a in sorted(checkpoint.accepted_jobs.items())]
    report.jobs = list(dict.fromkeys([*accepted, *report.jobs]))


def _leg_in_progress(state: RunState, message: RunMessage) -> bool:
    """Is another worker carrying this very leg right now (its state saved recently)? Legs are
    known by their message's number, never by how many attempts have begun."""
    if state.status != "running" or state.leg != message.leg:
        return False
    age = datetime.now(UTC) - datetime.fromisoformat(state.updated_at)
    return age.total_seconds() < HEARTBEAT_STALE_SECONDS


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value < 1_000_000


def _part_document(part: SegmentPart) -> dict[str, Any]:
    assert isinstance(part.source, BlobLocation)
    return {"name": part.source.name, "label": part.label, "etag": part.source.etag, "size": part.size,
            "columns": part.columns, "delimiter": part.delimiter, "encoding": part.encoding, "quoted": part.quoted,
            "types": part.types}


def _mapping_document(mapping: FieldMapping) -> dict[str, str]:
    return {"email": mapping.email_column, **mapping.fields}


def _mapping_from(document: dict[str, str] | None, options: dict[str, Any]) -> FieldMapping:
    if not document or "email" not in document:
        raise ExportError("the run's pinned mapping is missing from its state")
    consent, identity, types = options.get("consent"), options.get("identity") or ["email"], options.get("types") or {}
    if not isinstance(identity, list) or not isinstance(types, dict):
        raise ExportError("the run's pinned mapping is damaged")
    return FieldMapping(document["email"], {k: v for k, v in document.items() if k != "email"},
                        options.get("phone_region"), options.get("invalid_fields", "drop"),
                        ConsentMapping.from_document(consent) if consent else None,
                        {str(k): str(v) for k, v in types.items()}, tuple(str(kind) for kind in identity))


def _consent_document(mapping: FieldMapping) -> dict[str, dict[str, str]] | None:
    if mapping.consent is None:
        return None
    return {channel: {"column": c.column, "consented_at": c.consented_at} for channel, c in mapping.consent.channels.items()}


class _LatestProgress:
    """Keeps the newest progress report of a leg (a call per block: cheap); the heartbeat
    turns it into the state's progress every few seconds."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.progress = progress


def _remember(state: RunState, progress: Progress) -> None:
    """The run's progress on its state, which the heartbeat saves for the status API."""
    c = progress.counts
    state.counts, state.jobs = asdict(c), progress.jobs_accepted
    expected_rows = None
    source_size = sum(part["size"] for part in state.parts or [])
    if source_size and progress.bytes_read:
        expected_rows = round(c.rows_read * source_size / progress.bytes_read)
    remaining_jobs = 0
    if expected_rows is not None:
        expected_profiles = max(expected_rows - c.rejected - c.duplicates - c.unchanged, 0)
        remaining_jobs = max(math.ceil(expected_profiles / MAX_PROFILES_PER_JOB) - progress.jobs_accepted, 0)
    earliest = datetime.now(UTC) + timedelta(seconds=rate_floor_seconds(remaining_jobs, BULK_IMPORT_RATE))
    state.progress = {
        "leg": state.leg, "rows_read": c.rows_read, "expected_rows": expected_rows,
        "bytes_read": progress.bytes_read, "source_size": source_size,
        "profiles_accepted": c.accepted, "profiles_imported": c.sent,
        "jobs_accepted": progress.jobs_accepted, "jobs_in_flight": progress.jobs_in_flight,
        "earliest_finish": earliest.isoformat(timespec="seconds"),
    }
    if (removal := progress.removal) is not None:  # mirror mode's last phase
        state.progress.update({"leavers": removal.leavers, "leavers_looked_up": removal.looked_up,
                               "removed": removal.removed, "remove_pending": removal.pending})


def environment_key_source(variable: str) -> ApiKeySource:
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"environment variable {variable} holds no Klaviyo API key")
    return StaticApiKey(value)
