"""One export run: source -> mapping -> batching -> Klaviyo, with every row accounted for.

Three kinds of task share the event loop: the reader (parse, map, de-duplicate, batch;
CPU-bound, so it yields after every block), a few senders (submit jobs under the rate
limiter, resending without the profiles a 400 points at), and the poller (watches
accepted jobs until Klaviyo has finished them and collects per-profile import errors).
A bounded queue between reader and senders keeps memory flat whatever the segment size.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from exporter.batching import ImportJob, JobBatcher
from exporter.errors import ExportError, KlaviyoRequestError
from exporter.klaviyo.client import InvalidProfiles, JobStatus, KlaviyoClient
from exporter.mapping import Deduplicator, FieldMapping, ProfileMapper
from exporter.rejects import Reject, RejectsFile
from exporter.report import Counts, RunReport, new_run_id, utc_now
from exporter.sources import open_segment

_DONE = None


@dataclass(frozen=True)
class ExportPlan:
    """What to export where: one segment source into one Klaviyo list."""

    name: str
    source: str
    list_id: str
    mapping: FieldMapping


@dataclass(frozen=True)
class PipelineOptions:
    senders: int = 6
    queued_jobs: int = 2  # jobs built ahead of the senders; each is at most 5 MB
    poll_interval: float = 1.0


class _Run:
    def __init__(self, plan: ExportPlan, klaviyo: KlaviyoClient | None, rejects: RejectsFile,
                 report: RunReport, options: PipelineOptions, progress: Callable[[Counts], None] | None):
        self.plan, self.klaviyo, self.rejects, self.report = plan, klaviyo, rejects, report
        self.options, self.progress = options, progress
        self.counts = report.counts
        self.queue: asyncio.Queue[ImportJob | None] = asyncio.Queue(options.queued_jobs)
        self.pending: dict[str, ImportJob] = {}
        self.sending_done = asyncio.Event()
        self.job_accepted = asyncio.Event()
        self.columns = {target: column for target, column in plan.mapping.fields.items()}
        self.columns["email"] = plan.mapping.email_column

    def reject(self, rejects: list[Reject], by_klaviyo: bool = False) -> None:
        self.rejects.add(rejects)
        self.counts.rejected += len(rejects)
        if by_klaviyo:
            self.counts.klaviyo_errors += len(rejects)

    def tick(self) -> None:
        if self.progress is not None:
            self.progress(self.counts)

    async def read(self, segment: Any, mapper: ProfileMapper) -> None:
        dedupe = Deduplicator()
        batcher = JobBatcher(self.plan.list_id)
        async for block in segment.blocks:
            self.counts.rows_read += len(block.rows) + len(block.rejects)
            profiles, rejects = mapper.map_block(block)
            self.reject(rejects)
            unique = dedupe.unique(profiles)
            self.counts.duplicates += len(profiles) - len(unique)
            for job in batcher.add(unique):
                await self.queue.put(job)
            self.tick()
            await asyncio.sleep(0)  # let senders and the poller run between blocks
        for job in batcher.flush():
            await self.queue.put(job)
        for _ in range(self.options.senders):
            await self.queue.put(_DONE)

    async def send(self) -> None:
        while (job := await self.queue.get()) is not _DONE:
            if self.klaviyo is None:  # dry run: validated and batched, counted as would-send
                self.counts.sent += len(job)
                continue
            await self._submit(job)

    async def _submit(self, job: ImportJob) -> None:
        assert self.klaviyo is not None
        while len(job):
            try:
                job_id = await self.klaviyo.create_import_job(job.payload)
            except InvalidProfiles as refused:
                indexes = {p.index for p in refused.problems if p.index < len(job)}
                if not indexes:
                    raise KlaviyoRequestError("Klaviyo refused a job, pointing at profiles it does not hold") from None
                self.reject([self._reject_for(job, p.index, p.field, p.reason) for p in refused.problems
                             if p.index < len(job)], by_klaviyo=True)
                job = job.without(indexes, self.plan.list_id)
                continue
            self.report.jobs.append(job_id)
            job.payload = b""  # accepted: only the line numbers are still needed
            self.pending[job_id] = job
            self.job_accepted.set()
            return

    def _reject_for(self, job: ImportJob, index: int, field: str, reason: str) -> Reject:
        return Reject(job.lines[index], self.columns.get(field, ""), reason)

    async def poll(self) -> None:
        assert self.klaviyo is not None
        while not (self.sending_done.is_set() and not self.pending):
            if not self.pending:
                self.job_accepted.clear()
                waiter = asyncio.ensure_future(self.job_accepted.wait())
                done = asyncio.ensure_future(self.sending_done.wait())
                await asyncio.wait({waiter, done}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel(), done.cancel()
                continue
            await asyncio.sleep(self.options.poll_interval)
            statuses = await self.klaviyo.job_statuses(set(self.pending))
            for status in statuses.values():
                if status.finished:
                    await self._settle(status)
            self.tick()

    async def _settle(self, status: JobStatus) -> None:
        assert self.klaviyo is not None
        job = self.pending.pop(status.job_id)
        if status.status == "cancelled":
            raise KlaviyoRequestError(f"Klaviyo cancelled import job {status.job_id}")
        if status.failed:
            problems = [self._reject_for(job, p.index, p.field, p.reason)
                        async for p in self.klaviyo.import_errors(status.job_id) if p.index < len(job)]
            missing = status.failed - len(problems)
            problems += [Reject(0, "", f"Klaviyo reported a failure in job {status.job_id} without details")] * max(0, missing)
            self.reject(problems[: max(status.failed, len(problems))], by_klaviyo=True)
        self.counts.sent += len(job) - status.failed


async def run_export(
    plan: ExportPlan,
    klaviyo: KlaviyoClient | None,
    rejects: RejectsFile,
    *,
    run_id: str | None = None,
    options: PipelineOptions = PipelineOptions(),
    progress: Callable[[Counts], None] | None = None,
    credential: Any = None,
) -> RunReport:
    """Run one export; ``klaviyo=None`` is a dry run. Never raises for an export failure:
    the report says ``failed`` with the reason."""
    report = RunReport(run_id or new_run_id(), plan.name, plan.source, plan.list_id, utc_now(),
                       dry_run=klaviyo is None)
    run = _Run(plan, klaviyo, rejects, report, options, progress)
    try:
        segment = await open_segment(plan.source, credential)
        report.source = segment.description
        mapper = ProfileMapper.for_columns(plan.mapping, segment.columns)
        if klaviyo is not None:
            await klaviyo.check_list(plan.list_id)
        await _run_stages(run, segment, mapper)
    except ExportError as exc:
        report.finish(error=str(exc))
    else:
        report.finish()
    finally:
        rejects.close()
    if rejects.count:
        report.rejects = str(rejects.path)
    run.tick()
    return report


async def _run_stages(run: _Run, segment: Any, mapper: ProfileMapper) -> None:
    async def senders() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(run.options.senders):
                    group.create_task(run.send())
        finally:
            run.sending_done.set()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(run.read(segment, mapper))
            group.create_task(senders())
            if run.klaviyo is not None:
                group.create_task(run.poll())
    except BaseExceptionGroup as group_error:
        raise _first_export_error(group_error) from None


def _first_export_error(group: BaseExceptionGroup) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_export_error(exc)
        if isinstance(exc, ExportError):
            return exc
    return group.exceptions[0]
