"""Packs profiles into bulk import jobs that Klaviyo will accept.

A job closes at 10,000 profiles or when its estimated size reaches a target below 5 MB;
it is then serialized in one ``orjson`` call (per-profile calls cost more and each left a
4 KB buffer behind) and its exact byte size checked: a job that came out over 5 MB is
split in half until every part fits. What is sent is measured before it is sent, so no
job ever draws a 413.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from exporter.klaviyo.limits import MAX_JOB_BYTES, MAX_PROFILES_PER_JOB
from exporter.mapping.mapper import MappedProfile

TARGET_FRACTION = 0.9  # estimates run a little under the real size (escapes, non-ASCII)


def job_body(profiles: list[dict[str, Any]], list_id: str) -> bytes:
    return orjson.dumps({"data": {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": profiles}},
        "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
    }})


@dataclass(slots=True)
class ImportJob:
    """One bulk import request, serialized, and the source line of each of its profiles."""

    sequence: int  # position in the run: the same segment and mapping give the same jobs
    payload: bytes
    lines: array  # array('L'), one per profile, in payload order

    def __len__(self) -> int:
        return len(self.lines)

    def without(self, indexes: set[int], list_id: str) -> ImportJob:
        """The same job minus the profiles Klaviyo pointed at, for a resend (a rare path)."""
        profiles = orjson.loads(self.payload)["data"]["attributes"]["profiles"]["data"]
        keep = [i for i in range(len(profiles)) if i not in indexes]
        return ImportJob(self.sequence, job_body([profiles[i] for i in keep], list_id),
                         array("L", (self.lines[i] for i in keep)))


class JobBatcher:
    """Accumulates profiles; hands back each job as soon as it is full."""

    def __init__(self, list_id: str, max_profiles: int = MAX_PROFILES_PER_JOB, max_bytes: int = MAX_JOB_BYTES):
        self._list_id = list_id
        self._max_profiles = max_profiles
        self._max_bytes = max_bytes
        self._target = int(max_bytes * TARGET_FRACTION) - len(job_body([], list_id))
        self._sequence = 0
        self._start()

    def _start(self) -> None:
        self._profiles: list[dict[str, Any]] = []
        self._lines = array("L")
        self._size = 0

    def add(self, profiles: Iterable[MappedProfile]) -> list[ImportJob]:
        full: list[ImportJob] = []
        for profile in profiles:
            if self._profiles and (self._size + profile.size > self._target or len(self._profiles) >= self._max_profiles):
                full += self._close()
            self._profiles.append({"type": "profile", "attributes": profile.attributes})
            self._lines.append(profile.line)
            self._size += profile.size
        return full

    def flush(self) -> list[ImportJob]:
        return self._close() if self._profiles else []

    def _close(self) -> list[ImportJob]:
        jobs = self._serialize(self._profiles, self._lines)
        self._start()
        return jobs

    def _serialize(self, profiles: list[dict[str, Any]], lines: array) -> list[ImportJob]:
        payload = job_body(profiles, self._list_id)
        if len(payload) <= self._max_bytes or len(profiles) == 1:
            job = ImportJob(self._sequence, payload, lines)
            self._sequence += 1
            return [job]
        half = len(profiles) // 2
        return self._serialize(profiles[:half], lines[:half]) + self._serialize(profiles[half:], lines[half:])
