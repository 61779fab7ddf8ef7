"""A run's end, whatever ends it: the report saved, the state final, the export freed, and
the event operators query; or a leg that stands down without running (skipped, waiting)."""

from __future__ import annotations

import contextlib
from dataclasses import asdict

from exporter.config import ConfigError
from exporter.report import Counts, RunReport
from exporter.runs.checkpoint import Checkpoint
from exporter.runs.context import RunContext
from exporter.runs.events import report_event, run_event
from exporter.runs.lock import ExportLock
from exporter.runs.store import RunState
from exporter.verdict import FAILED


class RunFinisher:
    def __init__(self, context: RunContext):
        self._context = context

    async def finish(self, state: RunState, report: RunReport, lock: ExportLock) -> None:
        await self._context.store.save_report(report)
        state.status, state.error = report.status, report.error
        await self._context.store.save_state(state)
        await lock.release(state.run_id)
        report_event(report, leg=state.leg, trigger=state.trigger, throttled=state.throttled)

    @staticmethod
    def event(event: str, state: RunState) -> None:
        run_event(event, export=state.export, run_id=state.run_id, leg=state.leg, trigger=state.trigger,
                  status=state.status, dry_run=state.dry_run, counts=state.counts, started_at=state.started_at,
                  jobs=state.jobs, throttled=state.throttled, error=state.error)

    async def fail(self, state: RunState, lock: ExportLock, reason: str) -> None:
        report = RunReport(state.run_id, state.export, state.source, state.list_id or "",
                           state.started_at or state.created_at, dry_run=state.dry_run)
        if not report.list_id:
            with contextlib.suppress(ConfigError):
                report.list_id = (await self._context.config()).export(state.export).list_id
        if state.counts:
            report.counts = Counts(**state.counts)
        report.finish(error=reason)
        report.verdict = FAILED.name
        await self.finish(state, report, lock)

    async def stand_down(self, state: RunState, lock: ExportLock, status: str, reason: str | None = None) -> None:
        """The run does not go ahead in this leg: say why, and free the export."""
        state.status, state.error = status, reason
        await self._context.store.save_state(state)
        await lock.release(state.run_id)


def keep_earlier_work(report: RunReport, state: RunState, checkpoint: Checkpoint) -> None:
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
