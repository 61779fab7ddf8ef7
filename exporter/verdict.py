"""Did the segment get through? The verdict a scheduler acts on, beside the run's status.

A run can finish (``succeeded`` or ``partial``) and still achieve nothing a person wanted:
every row rejected because the file is Latin-1 read as UTF-8, a quarter of the rows refused
because a column is wrong, removals held by the guard or a damaged read. Cron jobs and
pipelines see only an exit code, so each of these has its own, and the app's report carries
the same verdict.

Why 0.1 is the default share of rejected rows that fails the verdict: a customer-data
platform's segment normally rejects well under 1% (typos, role addresses); a few percent
happen with old data; past a tenth of the rows, the cause is nearly always a wrong column,
encoding or delimiter rather than the people in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.report import RunReport

DEFAULT_MAX_REJECTED_FRACTION = 0.1


@dataclass(frozen=True)
class Verdict:
    name: str
    exit_code: int
    meaning: str


OK = Verdict("ok", 0, "the run finished and the segment got through (partial included: some rows rejected)")
FAILED = Verdict("failed", 1, "the run failed; the last line says why")
USAGE = Verdict("usage", 2, "a usage error: something was wrong before a byte of the segment was read")
NOTHING_SENT = Verdict("nothing_sent", 3, "the run finished, but it read rows and none got through "
                                          "(none sent, none already in the list)")
TOO_MANY_REJECTS = Verdict("too_many_rejects", 4, "the run finished, but more rows were rejected than "
                                                  "--max-rejected-fraction allows")
REMOVALS_HELD = Verdict("removals_held", 5, "the run finished, but mirror mode's removals were held "
                                            "(the guard, or a damaged read)")
INTERRUPTED = Verdict("interrupted", 130, "the run was interrupted (Ctrl-C or SIGTERM); its report says what was "
                                          "done, and the same command resumes it")
VERDICTS = (OK, FAILED, USAGE, NOTHING_SENT, TOO_MANY_REJECTS, REMOVALS_HELD, INTERRUPTED)


def verdict_of(report: RunReport, max_rejected_fraction: float = DEFAULT_MAX_REJECTED_FRACTION) -> Verdict:
    """The first that applies: failed, interrupted, nothing through, too many rejects, removals held, ok."""
    c, sync = report.counts, report.sync or {}
    if report.status == "failed":
        return FAILED
    if report.status == "interrupted":
        return INTERRUPTED
    if c.rows_read and not (c.sent or c.accepted or c.unchanged):
        return NOTHING_SENT
    if c.rows_read and c.rejected > max_rejected_fraction * c.rows_read:
        return TOO_MANY_REJECTS
    if sync.get("guard") or sync.get("damage"):
        return REMOVALS_HELD
    return OK


def exit_codes_text() -> str:
    """Every exit code, as ``--help`` and the README list them."""
    return "\n".join(f"  {v.exit_code:>3}  {v.meaning}" for v in VERDICTS)
