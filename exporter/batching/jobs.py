"""Packs serialized profiles into bulk import jobs that Klaviyo will accept.

Profiles arrive already serialized (``MappedChunk``), so each one's exact size is known:
a job closes before it would pass 10,000 profiles or 5 MB of request body, envelope and
commas included. What is sent is measured before it is sent, so no job draws a 413.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import orjson

from exporter.klaviyo.limits import MAX_JOB_BYTES, MAX_PROFILES_PER_JOB
from exporter.mapping.chunks import MappedChunk

_PREFIX = b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['


def _suffix(list_id: str) -> bytes:
    lists = orjson.dumps({"lists": {"data": [{"type": "list", "id": list_id}]}})
    return b']}},"relationships":' + lists + b"}}"


def job_body(profiles: list[dict[str, Any]], list_id: str) -> bytes:
    return orjson.dumps({"data": {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": profiles}},
        "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
    }})


@dataclass(slots=True)
class ImportJob:
    """One bulk import request, serialized, and the source line and email key of each of its
    profiles (the key finds a profile Klaviyo names by its ``original_payload`` alone)."""

    sequence: int  # position in the run: the same segment and mapping give the same jobs
    payload: bytes
    lines: array  # array('I'), one per profile, in payload order
    keys: array = field(default_factory=lambda: array("q"))  # array('q'): each profile's email key, in payload order

    def __len__(self) -> int:
        return len(self.lines)

    def without(self, indexes: set[int], list_id: str) -> ImportJob:
        """The same job minus the profiles Klaviyo pointed at, for a resend (a rare path)."""
        profiles = orjson.loads(self.payload)["data"]["attributes"]["profiles"]["data"]
        keep = [i for i in range(len(profiles)) if i not in indexes]
        return ImportJob(self.sequence, job_body([profiles[i] for i in keep], list_id),
                         array("I", (self.lines[i] for i in keep)),
                         array("q", (self.keys[i] for i in keep)) if self.keys else array("q"))


    def without_fields(self, fields: set[tuple[int, str]], list_id: str) -> ImportJob:
        """The same job with these (profile index, attribute path) left out: a field Klaviyo
        refused, when invalid fields are dropped rather than their rows (a rare path)."""
        profiles = orjson.loads(self.payload)["data"]["attributes"]["profiles"]["data"]
        for index, path in fields:
            holder: Any = profiles[index].get("attributes", {})
            *parents, name = path.split(".")
            for parent in parents:
                holder = holder.get(parent) if isinstance(holder, dict) else None
            if isinstance(holder, dict):
                holder.pop(name, None)
        return ImportJob(self.sequence, job_body(profiles, list_id), self.lines, self.keys)


class JobBatcher:
    """Accumulates profiles; hands back each job as soon as it is full."""

    def __init__(self, list_id: str, max_profiles: int = MAX_PROFILES_PER_JOB, max_bytes: int = MAX_JOB_BYTES):
        self._prefix, self._suffix = _PREFIX, _suffix(list_id)
        self._room = max_bytes - len(self._prefix) - len(self._suffix)
        self._max_profiles = max_profiles
        self._sequence = 0
        self._start()

    def _start(self) -> None:
        self._bodies: list[memoryview | bytes] = []  # single profiles, or runs of them (commas inside)
        self._lines = array("I")
        self._keys = array("q")
        self._count = 0  # profiles in the job so far
        self._bytes = -1  # n profiles need n-1 commas

    def add(self, chunk: MappedChunk, keep: list[int]) -> list[ImportJob]:
        """Take the profiles of ``chunk`` at positions ``keep``; return the jobs that filled."""
        full: list[ImportJob] = []
        if len(keep) == len(chunk):
            self._add_runs(chunk, full)  # every profile, in order: the common case
            return full
        lines, room, limit = chunk.lines, self._room, self._max_profiles
        # A slice of the chunk keeps the whole chunk's bytes alive until its job closes. When
        # few of its profiles are kept (a delta refresh), a job spans hundreds of chunks: copy
        # those few instead of pinning every chunk they came from.
        copy = 2 * len(keep) < len(chunk)
        for i in keep:
            body = bytes(chunk.body(i)) if copy else chunk.body(i)
            size = len(body) + 1
            if self._count and (self._bytes + size > room or self._count >= limit):
                full.append(self._close())
            self._bodies.append(body)
            self._lines.append(lines[i])
            self._keys.append(chunk.keys[i])
            self._count += 1
            self._bytes += size
        return full

    def _add_runs(self, chunk: MappedChunk, full: list[ImportJob]) -> None:
        """All of a chunk's profiles, as few slices as the jobs' limits allow: the same jobs as
        one profile at a time (each closes when the next profile would not fit), without a
        Python step per profile."""
        ends, lines, bodies, count = chunk.ends, chunk.lines, memoryview(chunk.bodies), len(chunk)
        i = 0
        while i < count:
            start = chunk.start(i)
            # the longest run i..j-1 that fits: its bytes, with one comma joining it, are ends[j-1] - start + 1
            j = min(bisect_right(ends, start - 1 + self._room - self._bytes, i, count), i + self._max_profiles - self._count)
            if j <= i:
                if self._count:
                    full.append(self._close())
                    continue
                j = i + 1  # a profile alone larger than a job is refused before this (100 KB limit)
            self._bodies.append(bodies[start:ends[j - 1]])
            self._lines.extend(lines[i:j])
            self._keys.extend(chunk.keys[i:j])
            self._bytes += ends[j - 1] - start + 1
            self._count += j - i
            i = j

    def flush(self) -> list[ImportJob]:
        return [self._close()] if self._bodies else []

    def _close(self) -> ImportJob:
        job = ImportJob(self._sequence, self._prefix + b",".join(self._bodies) + self._suffix, self._lines, self._keys)
        self._sequence += 1
        self._start()
        return job
