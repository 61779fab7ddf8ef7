"""Klaviyo's rate limits shared by every run on one account: any export, any process, any
app instance. Klaviyo counts an account's requests together, so a limiter per process lets
N concurrent exports send N times the account's rate and draw 429s.

The design: one small schedule per account and tier, in storage every process can reach
(a blob in the app's storage account; for the command line, a file in its state folder).
It lists the times at which requests were (or are about to be) sent inside the longest
window. A process that wants to send reads it, and when the earliest time that keeps every
window within Klaviyo's limit is due (``AHEAD``), reserves it with one conditional write (a
blob's ETag; a file lock), waits for it and sends; a request that leaves late has its stamp
moved at once. Because every request of the account is in one schedule, the windows hold
across processes: 429s stay Retry-After's safety net, not the plan.

Fair: each process asks for one slot at a time (its local queue holds the rest, in order),
and a slot goes to whoever reserves it first once it is due, so every run with a request
ready gets slots in turn: a small export waits for about one slot per other busy process,
never for a large export's backlog. A crashed holder leaves at most the one slot it had
reserved, a few milliseconds ahead; there is no share to give back.

Cost: a read and a conditional write per request (two storage calls); one more read when it
must wait for its slot, one more write when it left late, and a retry when two processes
reserve at the same instant. About 20-30 storage calls a second at Klaviyo's burst of 10 jobs
a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar

import orjson

T = TypeVar("T")
MAX_ENTRIES = 2000  # more than any tier's longest window can hold; a bigger document is damaged
UPDATE_ATTEMPTS = 50
AHEAD = 0.02  # seconds before its slot a request reserves it
MARGIN = 0.08  # seconds every window is widened by at first: see ``ratelimit.AsyncRateLimiter``
LATE = 0.005  # a request that leaves later than this after its slot has its stamp moved
SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


class ScheduleStore(Protocol):
    description: str

    async def update(self, change: Callable[[bytes | None], tuple[bytes | None, T]]) -> T:
        """Read the schedule, ``change`` it and write the result back (None: nothing to write),
        atomically with respect to every other holder; returns what ``change`` returned."""


class FileSchedule:
    """A schedule file under a lock beside it: processes on one machine sharing a folder."""

    def __init__(self, path: Path):
        self.path = path
        self.description = str(path)

    async def update(self, change: Callable[[bytes | None], tuple[bytes | None, T]]) -> T:
        """In the event loop's own thread: the lock is held for a read and a write of a few
        kilobytes (tens of microseconds), less than a hop to a worker thread would cost."""
        return self._update(change)

    def _update(self, change: Callable[[bytes | None], tuple[bytes | None, T]]) -> T:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                raw: bytes | None = self.path.read_bytes()
            except FileNotFoundError:
                raw = None
            written, result = change(raw)
            if written is not None:
                temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                temporary.write_bytes(written)
                os.replace(temporary, self.path)
            return result


class BlobSchedule:
    """A schedule blob written only if unchanged since read (its ETag): app instances, and
    command lines whose state is in a blob container."""

    def __init__(self, container: Any, name: str):
        self._blob = container.get_blob_client(name)
        self._container = container
        self.description = f"{container.container_name}/{name}"

    async def update(self, change: Callable[[bytes | None], tuple[bytes | None, T]]) -> T:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

        for _ in range(UPDATE_ATTEMPTS):
            try:
                downloader = await self._blob.download_blob()
                raw: bytes | None = await downloader.readall()
                condition = {"etag": downloader.properties.etag, "match_condition": MatchConditions.IfNotModified}
            except ResourceNotFoundError:
                raw, condition = None, {"match_condition": MatchConditions.IfMissing}
            written, result = change(raw)
            if written is None:
                return result
            try:
                await self._blob.upload_blob(written, overwrite=True, **condition)
                return result
            except ResourceNotFoundError:  # the container itself is missing: make it, then try again
                with contextlib.suppress(ResourceExistsError):
                    await self._container.create_container()
            except (ResourceExistsError, HttpResponseError) as exc:
                if getattr(exc, "status_code", 409) not in (409, 412):
                    raise
        raise RuntimeError(f"the rate-limit schedule {self.description} kept changing under us")


def schedule_name(account: str, tier: str) -> str:
    return f"_limits/{SAFE_NAME.sub('_', account)[:80]}/{tier}.json"


class SharedRateLimiter:
    """The ``AsyncRateLimiter`` interface (``acquire``, ``sent``, ``throttled``) over a shared
    schedule. ``margin`` widens every window for the jitter between our send times and the
    server's arrival times; a 429 anywhere widens it for every holder (it is in the schedule)."""

    def __init__(self, schedule: ScheduleStore, limits: Sequence[tuple[int, float]], margin: float | None = None,
                 max_margin: float = 0.3, clock: Callable[[], float] = time.time):
        self._schedule = schedule
        self._limits = tuple(limits)
        self._longest = max(window for _, window in self._limits)
        self._lock = asyncio.Lock()
        self._clock = clock
        self.margin = MARGIN if margin is None else margin
        self._max_margin = max_margin
        self._moved: dict[float, float] = {}  # reserved -> really sent, not yet written
        self._writes: set[asyncio.Task[Any]] = set()  # moves being written (kept from the garbage collector)

    async def acquire(self) -> float:
        """Wait for this process's turn, then reserve the next slot in the shared schedule when
        it is due, and wait for it; returns its time. A slot is reserved only just before it
        is used (``AHEAD``): a reservation made a second early could not take into account a
        request that leaves late in the meantime, and would let the server see one too many."""
        async with self._lock:
            while True:
                at, reserved = await self._schedule.update(lambda raw: self._reserve(raw, AHEAD))
                wait = at - self._clock()
                if reserved:
                    if wait > 0:
                        await asyncio.sleep(wait)
                    return at
                await asyncio.sleep(max(wait - AHEAD / 2, 0.001))

    def sent(self, slot: float) -> None:
        """The request reserved for ``slot`` has just left. When later than reserved (our own
        event loop's turns), its stamp is moved in the schedule at once, so that the slots
        others reserve from now on count from when the server really saw it."""
        now = self._clock()
        if now - slot > LATE:
            self._moved[slot] = now
            task = asyncio.get_running_loop().create_task(self._schedule.update(self._write_moved))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def throttled(self) -> None:
        self.margin = min(self._max_margin, self.margin + 0.05)

    def _reserve(self, raw: bytes | None, within: float | None = None) -> tuple[bytes | None, tuple[float, bool]]:
        """The schedule with the next slot reserved, and (the slot, True); or, when the slot is
        more than ``within`` seconds away, nothing to write, and (the slot, False)."""
        now = self._clock()
        document = _schedule_document(raw)
        margin = min(self._max_margin, max(self.margin, document["margin"]))
        self.margin = margin
        times = sorted(_ceil(self._moved.get(t, t)) for t in document["times"]
                       if now - t < self._longest + margin and t < now + self._longest + margin)
        at = max(now, times[-1]) if times else now  # first come, first served: never before an earlier reservation
        for limit, window in self._limits:
            if len(times) >= limit:
                at = max(at, times[-limit] + window + margin)
        at = _ceil(at)  # stored as reserved: to the 0.1 ms, never earlier
        if within is not None and at - now > within:
            return None, (at, False)
        self._moved.clear()  # written with this reservation
        times.append(at)
        return orjson.dumps({"margin": margin, "times": times[-MAX_ENTRIES:]}), (at, True)

    def _write_moved(self, raw: bytes | None) -> tuple[bytes | None, None]:
        """The schedule with the stamps of requests that left late moved to when they left."""
        if not self._moved:
            return None, None
        document = _schedule_document(raw)
        moved, self._moved = self._moved, {}
        times = sorted(_ceil(moved.get(t, t)) for t in document["times"])
        return orjson.dumps({"margin": document["margin"], "times": times[-MAX_ENTRIES:]}), None


def _ceil(at: float) -> float:
    return math.ceil(at * 10_000) / 10_000


def _schedule_document(raw: bytes | None) -> dict[str, Any]:
    """The schedule as stored; anything malformed reads as empty (it is only ever ours, and an
    empty schedule costs at most one window's worth of 429s, retried after their Retry-After)."""
    empty: dict[str, Any] = {"margin": 0.0, "times": []}
    if not raw:
        return empty
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return empty
    if not isinstance(document, dict):
        return empty
    times, margin = document.get("times"), document.get("margin", 0.0)
    if not isinstance(times, list) or len(times) > MAX_ENTRIES or \
            not all(type(t) in (int, float) for t in times) or type(margin) not in (int, float):
        return empty
    return {"margin": float(margin), "times": [float(t) for t in times]}


def shared_limiters(store_for: Callable[[str], ScheduleStore], scope: str) -> dict[str, SharedRateLimiter]:
    """One shared limiter per tier of Klaviyo's limits, for the runs of one account (``scope``);
    ``store_for`` makes the schedule for a name (a blob in a container, a file in a folder)."""
    from exporter.klaviyo.limits import TIER_LIMITS

    return {tier: SharedRateLimiter(store_for(schedule_name(scope, tier)), limits) for tier, limits in TIER_LIMITS.items()}
