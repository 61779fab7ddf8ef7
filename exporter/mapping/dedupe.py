"""Drops a second row for an email already seen in this run.

Only a 64-bit hash of each lower-cased email is kept, not the address: a million
addresses would otherwise cost ~100 MB. Two different addresses share a hash with odds
around 1 in 10^7 per million-row run; the second would be counted as a duplicate, never
dropped silently.
"""

from __future__ import annotations

from exporter.mapping.mapper import MappedProfile


class Deduplicator:
    def __init__(self) -> None:
        self._seen: set[int] = set()

    def unique(self, profiles: list[MappedProfile]) -> list[MappedProfile]:
        seen = self._seen
        kept = []
        for profile in profiles:
            key = hash(profile.email_key)
            if key not in seen:
                seen.add(key)
                kept.append(profile)
        return kept
