"""ISO 8601 times as Klaviyo writes them and people type them: ``Z`` for UTC, a time without
a zone taken as UTC (one place, so consent times are compared alike everywhere)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_iso(value: Any) -> datetime | None:
    """An aware datetime, or None for anything that is not an ISO 8601 time string."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
