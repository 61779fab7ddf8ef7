"""What a person sees of a CLI run on stderr: the progress line while it runs, the one-line
summary when it ends. Both say what the report says, never more and never otherwise."""

from __future__ import annotations

import sys
import time

from exporter.pipeline import Progress
from exporter.report import Counts, RunReport
from exporter.sync.mirror import Removal


class ProgressBar:
    """One self-overwriting stderr line, redrawn at most ten times a second: rows read,
    profiles Klaviyo has accepted (in jobs) and imported (jobs finished), and any retrying."""

    def __init__(self) -> None:
        self._last = 0.0
        self._started = time.monotonic()
        self._retry = ""
        self._counts = Counts()
        self._removal: Removal | None = None

    def __call__(self, progress: Progress) -> None:
        self._counts = progress.counts
        self._removal = progress.removal
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        self._draw(now)

    def retrying(self, what: str) -> None:
        self._retry = what
        self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        c = self._counts
        rate = c.rows_read / max(now - self._started, 1e-6)
        line = (f"{c.rows_read:>12,} rows read  {c.accepted:>12,} accepted  {c.sent:>12,} imported  "
                f"{c.rejected:>8,} rejected  {rate:>10,.0f} rows/s")
        if (removal := self._removal) is not None:
            line = (f"{c.rows_read:>12,} rows read  {c.sent:>12,} imported  leavers: {removal.looked_up:,} of "
                    f"{removal.leavers:,} looked up, {removal.removed:,} removed")
        if self._retry:
            line += f"  [{self._retry}]"
            self._retry = ""
        sys.stderr.write("\r" + line + "\033[K")
        sys.stderr.flush()

    def close(self) -> None:
        self._draw(time.monotonic())  # the last numbers, whatever the redraw limit skipped
        sys.stderr.write("\n")


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def summary(report: RunReport) -> str:
    c = report.counts
    verb = "would send" if report.dry_run else "sent"
    text = (f"{report.status}: {plural(c.rows_read, 'row')} read, {c.sent:,} {verb}, {c.rejected:,} rejected, "
            f"{plural(c.duplicates, 'duplicate')}, {plural(len(report.jobs), 'Klaviyo job')}")
    sync = report.sync or {}
    if c.unchanged:
        text += f", {c.unchanged:,} unchanged"
    if sync.get("mode") == "mirror":
        if sync.get("damage") or sync.get("guard"):
            text += f", {plural(sync['leavers'], 'leaver')} kept: removals held (why below)"
        else:
            text += (f", would remove {sync['would_remove']:,}" if report.dry_run else f", {c.removed:,} removed")
        if c.remove_pending and not (sync.get("damage") or sync.get("guard")):
            text += f" ({c.remove_pending:,} pending, {c.remove_failed:,} of them after a failed call)"
    if sync.get("preview"):
        text += f"; preview in {sync['preview']}"
    if c.warnings:
        text += f", {plural(c.warnings, 'field')} left out"
    if report.rejects:
        text += f"; rejects in {report.rejects}"
    if report.error:
        if c.accepted and report.status in ("failed", "interrupted"):
            stopped = "failed" if report.status == "failed" else "was interrupted"
            text += (f"; before it {stopped}, Klaviyo had accepted {c.accepted:,} profiles in "
                     f"{plural(len(report.jobs), 'job')}")
        text += f"; error: {report.error}"
    for hint in report.hints:
        text += f"; {hint}"
    return text
