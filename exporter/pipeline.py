"""One export run: source -> mapping -> batching -> Klaviyo, with every row accounted for.

Three kinds of task share the event loop: the reader (parse, map, de-duplicate, batch;
CPU-bound, so it yields after every block), a few senders (submit jobs under the rate
limiter, resending without the profiles a 400 points at), and the poller (watches
accepted jobs until Klaviyo has finished them and collects per-profile import errors).
A bounded queue between reader and senders keeps memory flat whatever the segment size.

A run given a deadline stops reading once it passes (after at least one new job, so
every leg makes progress), lets the jobs already built be accepted, and ends with status
``continuing``; the caller resumes it later with the same ledger.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from exporter.batching import ImportJob, JobBatcher
from exporter.errors import ExportError, KlaviyoRequestError
from exporter.klaviyo.client import InvalidProfiles, JobStatus, KlaviyoClient, ProfileProblem
from exporter.klaviyo.limits import PAGE_SIZE_MAX
from exporter.ledger import Accepted, JobLedger, MemoryLedger, Settled
from exporter.mapping import FieldMapping, ProfileMapper
from exporter.mapping.chunks import MappedChunk
from exporter.mapping.consent import Consent
from exporter.mapping.engine import RowEngine, engine_for
from exporter.rejects import Reject, RejectsFile
from exporter.report import Counts, RunReport, new_run_id, utc_now
from exporter.sources import BlobLocation, Segment, open_segment
from exporter.sources.integrity import ReadIntegrity
from exporter.sources.parts import SegmentPart, SegmentRun, open_parts
from exporter.subscribing import Subscriber
from exporter.sync.converge import SyncRun, settle_status
from exporter.sync.delta import Delta
from exporter.sync.mirror import Removal
from exporter.sync.plan import SyncPlan
from exporter.verdict import DEFAULT_MAX_REJECTED_FRACTION, verdict_of

_DONE = None
T = TypeVar("T")


@dataclass(frozen=True)
class ExportPlan:
    """What to export where: one segment source into one Klaviyo list."""

    name: str
    source: str | BlobLocation | SegmentRun  # a path or blob URL (the CLI), a blob by name (the app), or a folder's run
    list_id: str
    mapping: FieldMapping
    encoding: str = "utf-8"  # the segment's text encoding (any codec Python knows)
    format: str | None = None  # "csv" | "jsonl" | "parquet"; None: from the name, else from the content
    columns: list[str] | None = None  # the column names of a CSV without a header row
    entity: str | None = None  # the entity to read from a CDM folder
    sync: SyncPlan | None = None  # keep a snapshot: delta refresh, mirror mode (None: send everything, keep nothing)
    engine: str = "columnar"  # "columnar": Arrow kernels where a block allows, else rows; "row": rows only
    max_rejected_fraction: float = DEFAULT_MAX_REJECTED_FRACTION  # more rejected rows: the segment did not get through


@dataclass(frozen=True)
class Progress:
    """What a running export has done so far, for a progress line or a status API."""

    counts: Counts
    jobs_accepted: int  # Klaviyo jobs taken so far (in this leg and earlier ones)
    jobs_in_flight: int  # of those, not yet finished by Klaviyo
    bytes_read: int  # of the segment file, as stored (compressed, if it is)
    removal: Removal | None = None  # mirror mode, once every row is in: leavers looked up and removed


@dataclass(frozen=True)
class PipelineOptions:
    senders: int = 6
    queued_jobs: int = 2  # jobs built ahead of the senders; each is at most 5 MB
    poll_interval: float = 1.0  # the longest wait between polls once every job is sent
    first_poll: float = 0.25  # the first wait after the last job is sent (doubling from there)
    # Polls share the import tier's rate limit: while jobs still go out, a poll takes a job's
    # slot, so it waits until a listing page's worth of jobs is pending (one request learns of
    # them all) or, when jobs go out slowly, until this long has passed.
    poll_after_pending: int = PAGE_SIZE_MAX
    poll_while_sending: float = 30.0
    deadline: float | None = None  # event-loop time after which the run hands over
    job_timeout: float = 3600.0  # a job Klaviyo has not finished by then fails the run


class _Run:
    def __init__(self, plan: ExportPlan, klaviyo: KlaviyoClient | None, rejects: RejectsFile, report: RunReport,
                 options: PipelineOptions, progress: Callable[[Progress], None] | None, ledger: JobLedger,
                 delta: Delta):
        self.plan, self.klaviyo, self.rejects, self.report = plan, klaviyo, rejects, report
        self.delta = delta
        self.refused: set[int] = set()  # lines Klaviyo did not import: not in the next snapshot
        self.options, self.progress, self.ledger = options, progress, ledger
        self.counts = report.counts
        self.queue: asyncio.Queue[ImportJob | None] = asyncio.Queue(options.queued_jobs)
        self.pending: dict[str, ImportJob] = {}
        self.accepted_at: dict[str, float] = {}
        self.sending_done = asyncio.Event()
        self.job_accepted = asyncio.Event()
        self.cut = False  # the deadline passed: the rest of the segment is for the next leg
        self.segment: Segment | None = None
        self.columns = dict(plan.mapping.fields)
        self.columns["email"] = plan.mapping.email_column
        self.integrity = ReadIntegrity()
        self.removal: Removal | None = None
        consent = plan.mapping.consent
        self.subscriber = Subscriber(klaviyo, plan.list_id, f"Klaviyo segment exporter: {plan.name}"[:100], consent,
                                     rejects, report.counts) if consent is not None else None

    def reject(self, rejects: list[Reject], by_klaviyo: bool = False) -> None:
        self.rejects.add(rejects)
        self.counts.rejected += len(rejects)
        if by_klaviyo:
            self.counts.klaviyo_errors += len(rejects)
            self.refused.update(reject.line for reject in rejects)

    def tick(self) -> None:
        if self.progress is not None:
            bytes_read = self.segment.bytes_read if self.segment is not None else 0
            self.progress(Progress(self.counts, len(self.report.jobs), len(self.pending), bytes_read, self.removal))

    def removing(self, removal: Removal) -> None:
        """The removal phase's progress: counted live, shown as the rest is."""
        self.removal = removal
        self.counts.removed = removal.removed
        self.tick()

    def past_deadline(self) -> bool:
        deadline = self.options.deadline
        return deadline is not None and asyncio.get_running_loop().time() > deadline

    async def read(self, segment: Segment, engine: RowEngine) -> None:
        # Mapping a block takes tens of milliseconds of CPU. When jobs are sent, it runs in a
        # thread of its own, so this loop still sends each job the moment the rate limit
        # allows (a send that starts late also delays, window by window, every job after it)
        # and keeps sending while the next block is mapped. One thread, always the same: each
        # new thread would get its own malloc arena and hold tens of MB more. A dry run sends
        # nothing: it maps in this loop, without the threads' hand-overs (about 15% of its CPU).
        mapping = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mapping") if self.klaviyo else None
        try:
            await self._read_blocks(segment, engine, mapping)
        finally:
            if mapping is not None:
                mapping.shutdown(wait=False, cancel_futures=True)

    async def _read_blocks(self, segment: Segment, engine: RowEngine,
                           mapping: concurrent.futures.Executor | None) -> None:
        async def mapped(work: Callable[..., T], *args: Any) -> T:
            return work(*args) if mapping is None else await asyncio.get_running_loop().run_in_executor(mapping, work, *args)

        batcher = JobBatcher(self.plan.list_id)
        where = segment.part_lines.describe if segment.part_lines else "line {}".format
        size, sized, new_jobs = segment.size, segment.rows is not None, 0
        if segment.rows is not None:
            # At most one email per stored byte: a footer may claim any count (the table grows if too few).
            self.delta.expect(min(segment.rows, size) if size else segment.rows)
        encoding = _display(self.plan.encoding)
        async for block in segment.blocks:
            damaged: set[int] = set()
            if block.rejects or block.damage or block.has_undecodable:
                self.integrity.inspect(block, where, encoding)
                damaged = {damage.line for damage in block.damage}
            chunk, unchanged, fingerprints = await mapped(engine.map, block)
            self.counts.rows_read += chunk.rows + unchanged
            self.counts.unchanged += unchanged
            if not sized and size and segment.bytes_read and self.counts.rows_read >= 1_000:
                self.delta.expect(int(self.counts.rows_read * size / segment.bytes_read))  # a guess past it would double it
                sized = True
            self.reject(chunk.rejects)
            if chunk.warnings:
                self.rejects.add(chunk.warnings)
                self.counts.warnings += len(chunk.warnings)
                self.delta.note_warnings(chunk)
            classified = await mapped(self.delta.classify, chunk, fingerprints, damaged)
            keep, seen = classified.keep, classified.duplicates
            self.counts.duplicates += len(seen)
            self.counts.unchanged += classified.unchanged
            if seen:  # every row traceable: a duplicate is listed too, though not counted as rejected
                email = self.plan.mapping.email_column
                self.rejects.add(Reject(chunk.lines[i], email, f"duplicate of {where(first)}") for i, first in seen)
            if self.subscriber is not None and chunk.consents:
                await self.subscriber.add(self._trusted_consents(chunk, keep, damaged))
            for job in batcher.add(chunk, keep):
                new_jobs += self.ledger.accepted(job.sequence) is None
                await self.queue.put(job)
            self.tick()
            if new_jobs and self.past_deadline():
                self.cut = True
                break
            if mapping is None:
                await asyncio.sleep(0)  # let the poller run between blocks
        else:
            await self._send_held(batcher, where)
            for job in batcher.flush():
                await self.queue.put(job)
        if self.subscriber is not None:
            await self.subscriber.close()
        for _ in range(self.options.senders):
            await self.queue.put(_DONE)

    async def _send_held(self, batcher: JobBatcher, where: Callable[[int], str]) -> None:
        """Rows held back while it was unsure whether their email came before: each duplicate
        is listed with the line kept, and the others (a new email after all) are sent."""
        email = self.plan.mapping.email_column
        for duplicates in self.delta.held_duplicates():  # a partition of the pairs at a time
            self.counts.duplicates += len(duplicates)
            self.rejects.add(Reject(line, email, f"duplicate of {where(first)}") for line, first in duplicates)
            await asyncio.sleep(0)  # the senders and the poller keep their turns
        for chunk, damaged in self.delta.held_to_send():
            everyone = list(range(len(chunk)))
            if self.subscriber is not None and chunk.consents:
                await self.subscriber.add(self._trusted_consents(chunk, everyone, damaged))
            for job in batcher.add(chunk, everyone):
                await self.queue.put(job)

    def _trusted_consents(self, chunk: MappedChunk, keep: list[int], damaged: set[int]) -> list[Consent]:
        """The consents of the rows sent, but a damaged record's (a stray quote that shifted its
        columns could put a "yes" under consent): consent only moves forward with evidence."""
        consents = [chunk.consents[i] for i in keep if i in chunk.consents]
        if damaged:
            held = [c for c in consents if c.line in damaged]
            self.rejects.add(Reject(c.line, "", "not subscribed: the record is damaged, so its consent is no evidence")
                             for c in held)
            consents = [c for c in consents if c.line not in damaged]
        return consents

    async def send(self) -> None:
        while (job := await self.queue.get()) is not _DONE:
            if self.klaviyo is None:  # dry run: validated and batched, counted as would-send
                self.counts.sent += len(job)
            elif (known := self.ledger.accepted(job.sequence)) is not None:
                self._replay(job, known)
            else:
                await self._submit(job)

    def _replay(self, job: ImportJob, known: Accepted) -> None:
        """A job an earlier leg got accepted: account for it without sending it again."""
        if known.removed:
            job = job.without(set(known.removed), self.plan.list_id)
        self.reject(known.refused, by_klaviyo=True)
        self._warn(known.dropped)
        self._accepted(job, known.job_id, known.at)
        settled = self.ledger.settled(known.job_id)
        if settled is not None:
            self._apply(self.pending.pop(known.job_id), settled)

    async def _submit(self, job: ImportJob) -> None:
        """Send a job until Klaviyo takes it: a profile its 400 points at is left out (rejected),
        or, with invalid fields dropped, only the field it points at (a warning), once a field."""
        assert self.klaviyo is not None
        removed: list[int] = []
        refused: list[Reject] = []
        dropped: dict[tuple[int, str], Reject] = {}  # (line, field) -> its warning
        while len(job):
            try:
                job_id = await self.klaviyo.create_import_job(job.payload)
            except InvalidProfiles as error:
                problems = [p for p in error.problems if 0 <= p.index < len(job)]
                if not problems:
                    raise KlaviyoRequestError("Klaviyo refused a job, pointing at profiles it does not hold") from None
                fields = [p for p in problems if self._droppable(p) and (job.lines[p.index], p.field) not in dropped]
                bad = {p.index for p in problems if p not in fields}  # a whole profile wins over its fields
                if fields := [p for p in fields if p.index not in bad]:
                    for p in fields:
                        dropped[(job.lines[p.index], p.field)] = Reject(
                            job.lines[p.index], self.columns.get(p.field, ""),
                            f"{p.reason} ({p.field}); left out, the row was sent without it")
                    job = job.without_fields({(p.index, p.field) for p in fields}, self.plan.list_id)
                if bad:
                    refused += self._rejects_for(job, [p for p in problems if p.index in bad])
                    removed += _original_indexes(len(job) + len(removed), removed, bad)
                    job = job.without(bad, self.plan.list_id)
                continue
            accepted_at = time.time()
            kept = set(job.lines)
            warnings = [w for (line, _), w in dropped.items() if line in kept]
            self.ledger.record_accepted(job.sequence, Accepted(job_id, sorted(removed), refused, accepted_at, warnings))
            await self.ledger.save()  # durable before this sender takes another job: a crash resends only jobs in flight
            self.reject(refused, by_klaviyo=True)
            self._warn(warnings)
            self._accepted(job, job_id, accepted_at)
            return
        self.reject(refused, by_klaviyo=True)  # every profile of the job was refused

    def _droppable(self, problem: ProfileProblem) -> bool:
        """A field Klaviyo refused that may be left out instead of the row: invalid fields are
        dropped, and it is not the email that says who the profile is."""
        return self.plan.mapping.invalid_fields == "drop" and problem.field not in ("", "email")

    def _warn(self, warnings: list[Reject]) -> None:
        if warnings:
            self.rejects.add(warnings)
            self.counts.warnings += len(warnings)

    def _accepted(self, job: ImportJob, job_id: str, accepted_at: float) -> None:
        """``accepted_at`` is wall-clock time of the first acceptance, in whichever leg: the job
        timeout runs from then, so continuations cannot keep restarting it."""
        self.report.jobs.append(job_id)
        self.counts.accepted += len(job)
        job.payload = b""  # accepted: only the line numbers are still needed
        self.pending[job_id] = job
        age = max(0.0, time.time() - accepted_at) if accepted_at > 0 else 0.0
        self.accepted_at[job_id] = asyncio.get_running_loop().time() - age
        self.job_accepted.set()

    def _rejects_for(self, job: ImportJob, problems: list[ProfileProblem]) -> list[Reject]:
        """One reject per profile, however many problems Klaviyo names for it: conservation
        counts rows, so two complaints about one profile are one rejected row, reasons joined."""
        by_index: dict[int, list[ProfileProblem]] = {}
        for problem in problems:
            if 0 <= problem.index < len(job):
                by_index.setdefault(problem.index, []).append(problem)
        rejects = []
        for index, found in sorted(by_index.items()):
            columns = dict.fromkeys(self.columns.get(p.field, "") for p in found)
            reasons = dict.fromkeys(p.reason for p in found)
            rejects.append(Reject(job.lines[index], "; ".join(c for c in columns if c), "; ".join(reasons)))
        return rejects

    def _placed(self, job: ImportJob, problems: list[ProfileProblem]) -> list[ProfileProblem]:
        """Each import error on the profile it is about: where its pointer points, if the
        profile there is the one its ``original_payload`` names (or it names none); else the
        profile of the job with that email. One that neither finds is left out (unexplained)."""
        by_key: dict[int, int] | None = None
        placed = []
        for problem in problems:
            key = self.delta.email_keys([problem.email.encode()])[0] if problem.email and job.keys else None
            if 0 <= problem.index < len(job) and (key is None or job.keys[problem.index] == key):
                placed.append(problem)
            elif key is not None:
                if by_key is None:
                    by_key = {k: i for i, k in enumerate(job.keys)}
                if (index := by_key.get(key)) is not None:
                    placed.append(dataclasses.replace(problem, index=index))
        return placed

    async def poll(self) -> None:
        """Watch accepted jobs until Klaviyo finishes them. Polls share the bulk-import tier's
        rate limit with the job submissions, so while jobs are still being sent they are
        rare (``poll_after_pending``, ``poll_while_sending``); once the last job is in, the
        first poll comes soon and the wait doubles up to ``poll_interval``, so the run ends
        close after Klaviyo does."""
        assert self.klaviyo is not None
        interval = min(self.options.first_poll, self.options.poll_interval)
        polled = False
        while not (self.sending_done.is_set() and (not self.pending or self.cut)):
            if not self.pending:
                await self._next_acceptance(None)
                continue
            if self.sending_done.is_set() and self.past_deadline() and polled:
                self.cut = True  # only waiting for Klaviyo now (and asked once in this leg): the next leg polls on
                return
            if not self.sending_done.is_set():
                loop = asyncio.get_running_loop()
                until = loop.time() + self.options.poll_while_sending
                while (len(self.pending) < self.options.poll_after_pending and not self.sending_done.is_set()
                       and loop.time() < until):
                    await self._next_acceptance(until - loop.time())
                if self.sending_done.is_set():
                    continue  # wake at once when the last job is in
            else:
                await asyncio.sleep(interval)
                interval = min(interval * 2, self.options.poll_interval)
            statuses = await self.klaviyo.job_statuses(set(self.pending))
            polled = True
            for status in statuses.values():
                if status.finished:
                    await self._settle(status)
            self._check_stuck()
            self.tick()

    async def _next_acceptance(self, timeout: float | None) -> None:
        """Until a job is accepted, the last job is sent, or ``timeout`` seconds pass."""
        self.job_accepted.clear()
        accepted = asyncio.ensure_future(self.job_accepted.wait())
        done = asyncio.ensure_future(self.sending_done.wait())
        await asyncio.wait({accepted, done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        accepted.cancel(), done.cancel()

    def _check_stuck(self) -> None:
        now = asyncio.get_running_loop().time()
        for job_id in self.pending:
            if now - self.accepted_at[job_id] > self.options.job_timeout:
                minutes = self.options.job_timeout / 60
                raise KlaviyoRequestError(f"Klaviyo has not finished import job {job_id} after {minutes:.0f} minutes")

    async def _settle(self, status: JobStatus) -> None:
        assert self.klaviyo is not None
        if status.status == "cancelled":
            raise KlaviyoRequestError(f"Klaviyo cancelled import job {status.job_id}")
        job = self.pending[status.job_id]
        refused: list[Reject] = []
        failed = min(max(status.failed, 0), len(job))  # an answer is untrusted: never more than the job held
        if failed:
            problems = [p async for p in self.klaviyo.import_errors(status.job_id)]
            refused = self._rejects_for(job, self._placed(job, problems))[:failed]
            unexplained = failed - len(refused)
            refused += [Reject(0, "", f"Klaviyo reported a failure in job {status.job_id} without details")] * unexplained
            if unexplained:
                self.refused.update(job.lines)  # which ones is unknown: none of the job goes into the snapshot
        settled = Settled(len(job) - failed, failed, refused)
        self.ledger.record_settled(status.job_id, settled)
        self._apply(self.pending.pop(status.job_id), settled)

    def _apply(self, job: ImportJob, settled: Settled) -> None:
        self.reject(settled.refused, by_klaviyo=True)
        self.counts.sent += settled.sent


def _original_indexes(original_size: int, removed: list[int], bad: set[int]) -> list[int]:
    """Map indexes in a job already shrunk by ``removed`` back to the original job's."""
    remaining = [i for i in range(original_size) if i not in set(removed)]
    return [remaining[i] for i in bad]


async def run_export(
    plan: ExportPlan,
    klaviyo: KlaviyoClient | None,
    rejects: RejectsFile,
    *,
    run_id: str | None = None,
    options: PipelineOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    credential: Any = None,
    ledger: JobLedger | None = None,
    interruptible: bool = False,
) -> RunReport:
    """Run (or resume) one export; ``klaviyo=None`` is a dry run. An export failure does
    not raise: the report says ``failed`` and why. ``interruptible`` (the CLI): a cancellation
    (Ctrl-C, SIGTERM) ends the run ``interrupted``, its ledger saved, instead of raising."""
    source = plan.source if isinstance(plan.source, str) else plan.source.description
    report = RunReport(run_id or new_run_id(), plan.name, source, plan.list_id, utc_now(),
                       dry_run=klaviyo is None)
    mapper: ProfileMapper | None = None
    run: _Run | None = None
    with tempfile.TemporaryDirectory(prefix="exporter-run-") as workdir:
        sync = SyncRun(plan.sync, plan.list_id, plan.mapping, Path(workdir), dry_run=klaviyo is None)
        try:
            delta = await sync.open()
            run = _Run(plan, klaviyo, rejects, report, options or PipelineOptions(), progress,
                       ledger or MemoryLedger(), delta)
            segment = run.segment = await _open(plan, credential)
            rejects.parts = segment.part_lines
            report.source = segment.description
            mapper = ProfileMapper.for_columns(plan.mapping, segment.columns, _display(plan.encoding),
                                               segment.column_types, bool(plan.sync and plan.sync.clear_emptied))
            delta.tracked = mapper.tracked
            engine = engine_for(plan.engine, mapper, delta, plan.mapping)
            report.blocks = engine.tally
            if klaviyo is not None:
                await klaviyo.check_list(plan.list_id)
            await _run_stages(run, segment, engine)
            if not run.cut:
                run.cut = await sync.finish(delta, klaviyo, report, run.refused, run.integrity, run.ledger,
                                            run.options.deadline, run.removing)
        except ExportError as exc:
            report.finish(error=str(exc))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not interruptible or task is None:
                raise
            task.uncancel()
            report.interrupt()
            if run is not None:
                await run.ledger.save()  # outcomes settled since the last acceptance, for the resumed run
        else:
            if run.cut:
                report.status = "continuing"
            else:
                report.finish()
                settle_status(report)
        finally:
            rejects.close()
            if run is not None:
                run.delta.close()
    if report.status != "continuing":  # interrupted included
        report.verdict = verdict_of(report, plan.max_rejected_fraction).name
    if mapper is not None:
        _encoding_hint(report, mapper.undecodable_rows, plan.encoding)
    if klaviyo is not None and klaviyo.limits_note:
        report.hints.append(klaviyo.limits_note)
    if rejects.count or rejects.always:
        report.rejects = str(rejects.path)
    if run is not None:
        run.tick()
    return report


async def _open(plan: ExportPlan, credential: Any) -> Segment:
    keep_text = plan.engine == "columnar"
    if not isinstance(plan.source, SegmentRun):
        return await open_segment(plan.source, credential, encoding=plan.encoding, format=plan.format,
                                  columns=plan.columns, keep_text=keep_text)

    async def open_part(part: SegmentPart) -> Segment:
        return await open_segment(part.source, credential, encoding=part.encoding or plan.encoding, format=plan.format,
                                  columns=part.columns or plan.columns, delimiter=part.delimiter, keep_text=keep_text,
                                  quoted=part.quoted)

    return await open_parts(plan.source, open_part)


UNDECODABLE_SHARE = 0.01  # more undecodable rows than this says the encoding is wrong, not a few rows


def _display(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "UTF-8" if name == "utf-8" else name


def _encoding_hint(report: RunReport, undecodable: int, encoding: str) -> None:
    if undecodable and undecodable > UNDECODABLE_SHARE * max(report.counts.rows_read, 1):
        name = _display(encoding)
        report.hints.append(f"{undecodable:,} rows held bytes that are not valid {name}: the file is probably not "
                            f"{name}; set its encoding with --encoding (\"encoding\" in an export), "
                            "e.g. cp1252 for Excel's exports")


async def _run_stages(run: _Run, segment: Segment, engine: RowEngine) -> None:
    async def senders() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(run.options.senders):
                    group.create_task(run.send())
        finally:
            run.sending_done.set()

    async def merge_new_members() -> None:
        """Once every job is sent, merge the snapshot's new members while Klaviyo finishes the
        last jobs, in a thread (the poller keeps its turns); waited for even if the run fails,
        so the spool is not closed under it."""
        await run.sending_done.wait()
        if run.cut:
            return
        merged = asyncio.get_running_loop().run_in_executor(None, run.delta.merge_new_members)
        try:
            await asyncio.shield(merged)
        except asyncio.CancelledError:
            await asyncio.wait([merged])
            raise

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(run.read(segment, engine))
            group.create_task(senders())
            if run.subscriber is not None:
                group.create_task(run.subscriber.run())
            if run.klaviyo is not None:
                group.create_task(run.poll())
                group.create_task(merge_new_members())
    except BaseExceptionGroup as group_error:
        raise _first_export_error(group_error) from None


def _first_export_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_export_error(exc)
        if isinstance(exc, ExportError):
            return exc
    return group.exceptions[0]
