"""Sliding-window rate limits, shared by the client (waits) and the simulator (refuses).

Klaviyo states its limits as "N requests per window" for several windows at once (burst
and steady). A log of recent request times is the exact model of that rule, and with at
most 150 entries it costs nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Callable, Protocol, Sequence


class RateLimiter(Protocol):
    """What the client needs of a limiter: this process's own (``AsyncRateLimiter``) or one
    shared by every run on the account (``shared_limits.SharedRateLimiter``)."""

    async def acquire(self) -> float: ...

    def sent(self, slot: float) -> None: ...

    def throttled(self) -> None: ...


class SlidingWindows:
    """Admits a request only if every (limit, window) pair still has room."""

    def __init__(self, limits: Sequence[tuple[int, float]], clock: Callable[[], float] = time.monotonic):
        self._limits = tuple(limits)
        self._longest = max(window for _, window in self._limits)
        self._times: deque[float] = deque()
        self._clock = clock
        self.last_admitted = 0.0  # when ``wait_time`` last admitted a request

    def wait_time(self, margin: float = 0.0) -> float:
        """Seconds until a request would be admitted (0 if now); records it when 0.
        ``margin`` widens every window by that many seconds."""
        now = self._clock()
        times = self._times
        while times and now - times[0] >= self._longest + margin:
            times.popleft()
        wait = 0.0
        for limit, window in self._limits:
            if len(times) >= limit:
                # The request `limit` places back must leave the window before one more fits.
                oldest_in_way = times[-limit]
                wait = max(wait, oldest_in_way + window + margin - now)
        if wait <= 0:
            times.append(now)
            self.last_admitted = now
            return 0.0
        return wait

    def headroom(self) -> tuple[int, int, int]:
        """(limit, requests left, whole seconds until one more frees) of the longest window:
        what Klaviyo's ``RateLimit-*`` headers say on a successful answer."""
        limit, window = max(self._limits, key=lambda pair: pair[1])
        now = self._clock()
        inside = [t for t in self._times if now - t < window]
        reset = math.ceil(inside[0] + window - now) if inside else 0
        return limit, max(limit - len(inside), 0), reset

    def restamp(self, then: float) -> None:
        """Move a request admitted at ``then`` to now, when it really left: the time between
        admitting a request and sending it (our own event loop's turns) must not narrow the
        server's view of the windows."""
        times = self._times
        try:
            times.remove(then)
        except ValueError:  # already out of every window
            return
        now = self._clock()
        at = len(times)
        while at and times[at - 1] > now:
            at -= 1
        times.insert(at, now)


def rate_floor_seconds(requests: int, limits: Sequence[tuple[int, float]]) -> float:
    """When the last of ``requests`` more requests may be sent under ``limits``, each sent as
    early as the windows allow from a fresh start: what no client can beat."""
    clock = [0.0]
    windows = SlidingWindows(limits, clock=lambda: clock[0])
    for _ in range(requests):
        while (wait := windows.wait_time()) > 0:
            clock[0] += wait
    return clock[0]


class AsyncRateLimiter:
    """Makes callers wait their turn, in arrival order, so requests rarely draw a 429.

    ``margin`` widens every window a little: the server times arrivals, which trail our
    send times by network and queueing jitter. Each 429 that gets through widens it a
    little more (up to ``max_margin``): the jitter this server shows is the one to allow.
    It starts at 0.08 s: with each slot stamped when its request leaves, the simulator
    mostly saw windows up to 0.04 s shorter than ours, but at 0.06 s one run in five still
    drew a 429 (which costs a second); every 0.01 s of margin costs a rate-limited run
    about 0.09 s (it adds up once per window).
    """

    def __init__(self, limits: Sequence[tuple[int, float]], margin: float = 0.08, max_margin: float = 0.3):
        self._windows = SlidingWindows(limits)
        self._lock = asyncio.Lock()
        self.margin = margin
        self._max_margin = max_margin

    async def acquire(self) -> float:
        """Wait for a slot; returns its time, for ``sent``."""
        async with self._lock:
            while (wait := self._windows.wait_time(self.margin)) > 0:
                await asyncio.sleep(wait)
            return self._windows.last_admitted

    def sent(self, slot: float) -> None:
        """The request given ``slot`` has just gone out (its headers are on the wire)."""
        self._windows.restamp(slot)

    def throttled(self) -> None:
        """The server refused a request we admitted: allow for more jitter from now on."""
        self.margin = min(self._max_margin, self.margin + 0.05)
