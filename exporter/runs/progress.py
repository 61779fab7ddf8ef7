"""A leg's progress as operators see it: the newest counts kept cheaply while rows flow, turned
into the run's state (rows read against expected, jobs, Klaviyo's "not before") by a
heartbeat that saves it every few seconds, which also tells a redelivered message whether
its leg is still being carried."""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from exporter.klaviyo.limits import BULK_IMPORT_RATE, MAX_PROFILES_PER_JOB
from exporter.klaviyo.ratelimit import rate_floor_seconds
from exporter.pipeline import Progress
from exporter.runs.checkpoint import Checkpoint
from exporter.runs.messages import RunMessage
from exporter.runs.store import RunState, RunStore

HEARTBEAT_SECONDS = 5  # a running leg saves its state this often...
HEARTBEAT_STALE_SECONDS = 90  # ...so one silent this long has died; well past host.json's 30 s retry delay


class LatestProgress:
    """Keeps the newest progress report of a leg (a call per block: cheap); the heartbeat
    turns it into the state's progress every few seconds."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.progress = progress


def remember(state: RunState, progress: Progress) -> None:
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


async def save_while_running(store: RunStore, state: RunState, checkpoint: Checkpoint,
                        latest: LatestProgress) -> None:
    """The leg's heartbeat: progress and settled jobs every few seconds (acceptances are
    saved as they happen, by the senders)."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        await checkpoint.save()
        if latest.progress is not None:
            remember(state, latest.progress)
        await store.save_state(state)


def leg_in_progress(state: RunState, message: RunMessage) -> bool:
    """Is another worker carrying this very leg right now (its state saved recently)? Legs are
    known by their message's number, never by how many attempts have begun."""
    if state.status != "running" or state.leg != message.leg:
        return False
    age = datetime.now(UTC) - datetime.fromisoformat(state.updated_at)
    return age.total_seconds() < HEARTBEAT_STALE_SECONDS
