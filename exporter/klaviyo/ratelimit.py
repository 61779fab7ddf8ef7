"""Sliding-window rate limits, shared by the client (waits) and the simulator (refuses).

Klaviyo states its limits as "N requests per window" for several windows at once (burst
and steady). A log of recent request times is the exact model of that rule, and with at
most 150 entries it costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable, Sequence


class SlidingWindows:
    """Admits a request only if every (limit, window) pair still has room."""

    def __init__(self, limits: Sequence[tuple[int, float]], clock: Callable[[], float] = time.monotonic):
        self._limits = tuple(limits)
        self._longest = max(window for _, window in self._limits)
        self._times: deque[float] = deque()
        self._clock = clock

    def wait_time(self) -> float:
        """Seconds until a request would be admitted (0 if now); records it when 0."""
        now = self._clock()
        times = self._times
        while times and now - times[0] >= self._longest:
            times.popleft()
        wait = 0.0
        for limit, window in self._limits:
            if len(times) >= limit:
                # The request `limit` places back must leave the window before one more fits.
                oldest_in_way = times[-limit]
                wait = max(wait, oldest_in_way + window - now)
        if wait <= 0:
            times.append(now)
            return 0.0
        return wait


class AsyncRateLimiter:
    """Makes callers wait their turn, in arrival order, so requests never draw a 429.

    ``margin`` widens every window a little: the server measures arrival times, which
    trail our send times by network and queueing delay.
    """

    def __init__(self, limits: Sequence[tuple[int, float]], margin: float = 0.05):
        self._windows = SlidingWindows([(n, w + margin) for n, w in limits])
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while (wait := self._windows.wait_time()) > 0:
                await asyncio.sleep(wait)
