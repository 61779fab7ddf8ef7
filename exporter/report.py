"""The run report: what a run read, sent and refused, in the shape DESIGN.md promises.

Conservation is the point of the report: every row read is sent, rejected, a duplicate
or unchanged. Only a failed run may leave rows ``unsent`` (read, but their fate unknown).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


@dataclass
class Counts:
    rows_read: int = 0
    sent: int = 0
    rejected: int = 0
    duplicates: int = 0
    unchanged: int = 0
    klaviyo_errors: int = 0  # the part of `rejected` that Klaviyo refused
    warnings: int = 0  # fields left out of rows that were sent (listed in the rejects file); not a row count
    accepted: int = 0  # profiles in jobs Klaviyo has taken (``sent`` counts those it has finished importing)
    unsent: int = 0  # only on a failed run: read, but not known to have reached Klaviyo
    removed: int = 0  # mirror mode: leavers this run took off the list; not rows of this segment
    remove_failed: int = 0  # mirror mode: of the pending, those whose lookup or removal call failed
    remove_pending: int = 0  # mirror mode: leavers not confirmed off the list (held, failed, out of time): tried again
    subscribed: int = 0  # consent: profiles subscribed (a dry run: that would be, were nobody opted out since)
    already_subscribed: int = 0  # consent: channels already subscribed in Klaviyo, left alone
    consent_conflicts: int = 0  # consent: channels not subscribed, an opt-out newer than the consent (listed)

    def settle_unsent(self) -> None:
        self.unsent = self.rows_read - (self.sent + self.rejected + self.duplicates + self.unchanged)


@dataclass
class RunReport:
    run_id: str
    export: str
    source: str
    list_id: str
    started_at: str
    dry_run: bool = False
    status: str = "running"  # running | succeeded | partial | failed | interrupted (CLI: resumable)
    finished_at: str | None = None
    counts: Counts = field(default_factory=Counts)
    jobs: list[str] = field(default_factory=list)
    rejects: str | None = None  # where the rejects CSV is, when there are rejects
    error: str | None = None
    hints: list[str] = field(default_factory=list)  # what a person may want to change (e.g. the encoding)
    sync: dict[str, Any] | None = None  # delta and mirror: mode, snapshot, new/changed/unchanged/leavers, guard
    blocks: Any = None  # blocks each path mapped (``engine.BlockTally``): columnar, row
    verdict: str | None = None  # did the segment get through (``verdict.VERDICTS``); the CLI's exit code

    def finish(self, error: str | None = None) -> None:
        self.finished_at = utc_now()
        if error is not None:
            self.error = error
            self.status = "failed"
            self.counts.settle_unsent()
        else:
            self.status = "partial" if self.counts.rejected else "succeeded"

    def interrupt(self) -> None:
        """Stopped by the person who started it (the CLI): what was done so far, to resume."""
        self.finished_at = utc_now()
        self.status = "interrupted"
        self.error = "interrupted before it finished; the same command resumes it"
        self.counts.settle_unsent()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)
