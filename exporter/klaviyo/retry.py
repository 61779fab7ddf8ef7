"""When to try a Klaviyo request again, and how long to wait first.

Exponential backoff with full jitter, so parallel senders do not retry in lockstep; a
server's ``Retry-After`` is a floor, never shortened. Both an attempt count and a time
budget bound the retrying, so a dead endpoint fails the run instead of hanging it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    budget_seconds: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempts count from 1)."""
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        if retry_after is not None:
            return retry_after + random.uniform(0, self.base_delay / 2)
        return backoff


def parse_retry_after(value: str | None) -> float | None:
    """Klaviyo sends whole seconds; anything else is ignored in favour of backoff."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
