"""Packs serialized profiles into bulk import jobs that Klaviyo will accept.

A job closes before it would pass 10,000 profiles or 5 MB: the request's exact byte size
is known up front (envelope + profile bodies + commas), so no job ever draws a 413.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Iterable

import orjson

from exporter.klaviyo.limits import MAX_JOB_BYTES, MAX_PROFILES_PER_JOB
from exporter.mapping.mapper import MappedProfile

_PREFIX = b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['


def _suffix(list_id: str) -> bytes:
    lists = orjson.dumps({"lists": {"data": [{"type": "list", "id": list_id}]}})
    return b']}},"relationships":' + lists + b"}}"


@dataclass(slots=True)
class ImportJob:
    """One bulk import request: the profiles' JSON and the source line of each."""

    sequence: int  # position in the run, stable across re-reads of the same segment
    bodies: list[bytes]
    lines: array  # array('L'): source line per profile, for mapping Klaviyo errors back

    def __len__(self) -> int:
        return len(self.bodies)

    def payload(self, list_id: str) -> bytes:
        return _PREFIX + b",".join(self.bodies) + _suffix(list_id)

    def without(self, indexes: set[int]) -> "ImportJob":
        """The same job minus the profiles Klaviyo pointed at, for a resend."""
        keep = [i for i in range(len(self.bodies)) if i not in indexes]
        return ImportJob(self.sequence, [self.bodies[i] for i in keep], array("L", (self.lines[i] for i in keep)))


class JobBatcher:
    """Accumulates profiles; hands back each job as soon as it is full."""

    def __init__(self, list_id: str, max_profiles: int = MAX_PROFILES_PER_JOB, max_bytes: int = MAX_JOB_BYTES):
        envelope = len(_PREFIX) + len(_suffix(list_id))
        self._room = max_bytes - envelope
        self._max_profiles = max_profiles
        self._sequence = 0
        self._start()

    def _start(self) -> None:
        self._bodies: list[bytes] = []
        self._lines = array("L")
        self._bytes = -1  # n bodies need n-1 commas

    def add(self, profiles: Iterable[MappedProfile]) -> list[ImportJob]:
        full: list[ImportJob] = []
        for profile in profiles:
            size = len(profile.body) + 1
            if self._bodies and (self._bytes + size > self._room or len(self._bodies) >= self._max_profiles):
                full.append(self._close())
            self._bodies.append(profile.body)
            self._lines.append(profile.line)
            self._bytes += size
        return full

    def flush(self) -> ImportJob | None:
        return self._close() if self._bodies else None

    def _close(self) -> ImportJob:
        job = ImportJob(self._sequence, self._bodies, self._lines)
        self._sequence += 1
        self._start()
        return job
