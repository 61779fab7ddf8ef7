"""A run's ledger, persisted: which jobs Klaviyo accepted and how the finished ones went.

Saved to ``{export}/{run_id}/checkpoint.json`` after jobs are accepted (at most once a
second while a run works, and always before a hand-over), so a continuation or a
retried worker resumes without resending what Klaviyo already took.
"""

from __future__ import annotations

from typing import Any

import orjson

from exporter.ledger import Accepted, MemoryLedger, Settled
from exporter.rejects import Reject


class Checkpoint(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.dirty = False

    def record_accepted(self, sequence: int, accepted: Accepted) -> None:
        super().record_accepted(sequence, accepted)
        self.dirty = True

    def record_settled(self, job_id: str, settled: Settled) -> None:
        super().record_settled(job_id, settled)
        self.dirty = True

    def to_json(self) -> bytes:
        return orjson.dumps({
            "accepted": {str(seq): {"job_id": a.job_id, "removed": a.removed, "refused": [list(r) for r in a.refused]}
                         for seq, a in self.accepted_jobs.items()},
            "settled": {job_id: {"sent": s.sent, "failed": s.failed, "refused": [list(r) for r in s.refused]}
                        for job_id, s in self.settled_jobs.items()},
        })

    @classmethod
    def from_json(cls, raw: bytes) -> Checkpoint:
        data: dict[str, Any] = orjson.loads(raw)
        checkpoint = cls()
        for seq, a in data.get("accepted", {}).items():
            checkpoint.accepted_jobs[int(seq)] = Accepted(a["job_id"], a["removed"], [Reject(*r) for r in a["refused"]])
        for job_id, s in data.get("settled", {}).items():
            checkpoint.settled_jobs[job_id] = Settled(s["sent"], s["failed"], [Reject(*r) for r in s["refused"]])
        return checkpoint
