"""A run's ledger, persisted: which jobs Klaviyo accepted and how the finished ones went.

Saved to ``{export}/{run_id}/checkpoint.json`` each time Klaviyo accepts a job, before that
sender takes its next one (``save``), so a worker killed at any moment resends at most the
jobs in flight: one per sender. Settled outcomes are saved with the next acceptance, by
the run's heartbeat and at every hand-over; a lost one only means polling that job again.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import orjson

from exporter.errors import ExportError
from exporter.ledger import Accepted, MemoryLedger, Settled
from exporter.rejects import Reject

Persist = Callable[[bytes], Awaitable[None]]


class CheckpointDamaged(ExportError):
    pass


class Checkpoint(MemoryLedger):
    def __init__(self, persist: Persist | None = None) -> None:
        super().__init__()
        self.persist = persist
        self._version = 0  # bumped by every record
        self._saved = 0  # the version the store holds
        self._lock = asyncio.Lock()

    def record_accepted(self, sequence: int, accepted: Accepted) -> None:
        super().record_accepted(sequence, accepted)
        self._version += 1

    def record_settled(self, job_id: str, settled: Settled) -> None:
        super().record_settled(job_id, settled)
        self._version += 1

    def record_removal(self, document: dict[str, Any]) -> None:
        super().record_removal(document)
        self._version += 1

    async def save(self) -> None:
        """Persist everything recorded so far; concurrent callers share one upload when they can."""
        wanted = self._version
        if self.persist is None or self._saved >= wanted:
            return
        async with self._lock:
            if self._saved >= wanted:
                return  # another sender's upload already carried this record
            version, body = self._version, self.to_json()
            await self.persist(body)
            self._saved = max(self._saved, version)

    def to_json(self) -> bytes:
        return orjson.dumps({
            "accepted": {str(seq): {"job_id": a.job_id, "removed": a.removed, "refused": [list(r) for r in a.refused],
                                    "at": a.at, "dropped": [list(r) for r in a.dropped]}
                         for seq, a in self.accepted_jobs.items()},
            "settled": {job_id: {"sent": s.sent, "failed": s.failed, "refused": [list(r) for r in s.refused]}
                        for job_id, s in self.settled_jobs.items()},
            "removal": self.removal_record,
        })

    @classmethod
    def from_json(cls, raw: bytes, persist: Persist | None = None) -> Checkpoint:
        """The ledger in ``raw``; ``CheckpointDamaged`` if it is not one (it is stored data:
        input like any other), so a run fails with a reason rather than retrying a crash."""
        try:
            return cls._parse(orjson.loads(raw), persist)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointDamaged("the run's checkpoint (which jobs Klaviyo accepted) is damaged; start a new "
                                    "run") from None

    @classmethod
    def _parse(cls, data: Any, persist: Persist | None) -> Checkpoint:
        checkpoint = cls(persist)
        for seq, a in data.get("accepted", {}).items():
            checkpoint.accepted_jobs[int(seq)] = Accepted(a["job_id"], a["removed"], [Reject(*r) for r in a["refused"]],
                                                          float(a.get("at") or 0.0),
                                                          [Reject(*r) for r in a.get("dropped") or []])
        for job_id, s in data.get("settled", {}).items():
            checkpoint.settled_jobs[job_id] = Settled(s["sent"], s["failed"], [Reject(*r) for r in s["refused"]])
        removal = data.get("removal")
        checkpoint.removal_record = removal if isinstance(removal, dict) else None
        return checkpoint
