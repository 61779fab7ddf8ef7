"""What Klaviyo has already accepted in a run, so a resumed run never sends a job twice.

Batching is deterministic (same segment + mapping -> same jobs, same sequence numbers),
so a run that resumes re-reads its segment and, job by job, asks the ledger whether that
job was accepted before; if so it is skipped, and if Klaviyo already finished it, its
outcome is replayed from here instead of being polled again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.rejects import Reject


@dataclass
class Accepted:
    job_id: str
    removed: list[int] = field(default_factory=list)  # indexes Klaviyo's 400 pointed at, taken out before acceptance
    refused: list[Reject] = field(default_factory=list)  # the rejects those removals produced
    at: float = 0.0  # wall clock (epoch seconds) of the first acceptance: a job's timeout spans legs
    dropped: list[Reject] = field(default_factory=list)  # warnings for fields Klaviyo refused, left out and resent


@dataclass
class Settled:
    sent: int
    failed: int
    refused: list[Reject] = field(default_factory=list)  # per-profile import errors


class JobLedger(Protocol):
    def accepted(self, sequence: int) -> Accepted | None: ...

    def settled(self, job_id: str) -> Settled | None: ...

    def record_accepted(self, sequence: int, accepted: Accepted) -> None: ...

    def record_settled(self, job_id: str, settled: Settled) -> None: ...

    def removal(self) -> dict[str, Any] | None:
        """Mirror mode: what earlier legs of the run removed (``sync.mirror.Removal``'s document)."""
        ...

    def record_removal(self, document: dict[str, Any]) -> None: ...

    async def save(self) -> None:
        """Make what was recorded durable before the caller sends anything more."""


class MemoryLedger:
    """A ledger for one uninterrupted run (the CLI); the function app persists its own."""

    def __init__(self) -> None:
        self.accepted_jobs: dict[int, Accepted] = {}
        self.settled_jobs: dict[str, Settled] = {}
        self.removal_record: dict[str, Any] | None = None

    def accepted(self, sequence: int) -> Accepted | None:
        return self.accepted_jobs.get(sequence)

    def settled(self, job_id: str) -> Settled | None:
        return self.settled_jobs.get(job_id)

    def record_accepted(self, sequence: int, accepted: Accepted) -> None:
        self.accepted_jobs[sequence] = accepted

    def record_settled(self, job_id: str, settled: Settled) -> None:
        self.settled_jobs[job_id] = settled

    def removal(self) -> dict[str, Any] | None:
        return self.removal_record

    def record_removal(self, document: dict[str, Any]) -> None:
        self.removal_record = document

    async def save(self) -> None:
        """Nothing outlives an uninterrupted run, so nothing to persist."""
