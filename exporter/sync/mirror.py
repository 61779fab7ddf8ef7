"""Mirror mode: members of the snapshot who left the segment come off the Klaviyo list.

Klaviyo removes list members by profile id, so leavers' emails (read from the snapshot
by position) are looked up through the profile filter and removed in batches of Klaviyo's
maximum, each call within its own endpoint's rate limit. Removal never deletes,
suppresses or unsubscribes a profile. A batch that fails stays in the snapshot, so the
next run tries it again. The guard stops a run that would empty much of a list: an empty
or truncated segment file must never wipe one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from exporter.errors import KlaviyoRequestError
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.limits import MAX_MEMBERSHIP_IDS
from exporter.klaviyo.lists import profile_ids_by_email, remove_from_list

ALLOW = "run again with --allow-mass-removal (HTTP: {\"allowMassRemoval\": true})"


@dataclass
class Removal:
    removed: int = 0  # taken off the list, or unknown to Klaviyo (so not on it)
    failed: int = 0
    removed_positions: set[int] = field(default_factory=set)


def guard(leavers: int, members: int, rows_read: int, allowed: bool, max_fraction: float) -> str | None:
    """Why the run must remove nobody, or None."""
    if not leavers or allowed:
        return None
    if rows_read == 0:
        return (f"the segment is empty, so mirror mode would remove all {leavers:,} members of the list; nothing was "
                f"removed. If the segment really is empty, {ALLOW}")
    if leavers > max_fraction * members:
        return (f"mirror mode would remove {leavers:,} of the list's {members:,} members ({leavers / members:.0%}), "
                f"more than max_remove_fraction {max_fraction:g} allows; nothing was removed. If that is right, {ALLOW}")
    return None


def leaver_emails(emails: Path, positions: list[int]) -> dict[int, str]:
    """Position -> email of the members at ``positions`` (ascending), from the snapshot's
    emails (line ``i``: member ``i``)."""
    found: dict[int, str] = {}
    wanted = iter(positions)
    target = next(wanted, None)
    with emails.open("rb") as lines:
        for at, line in enumerate(lines):
            if at == target:
                found[at] = line.rstrip(b"\n").decode("utf-8", "replace")
                target = next(wanted, None)
                if target is None:
                    break
    return found


async def remove_leavers(klaviyo: KlaviyoClient, list_id: str, leavers: dict[int, str]) -> Removal:
    """``leavers``: snapshot position -> email. The positions removed come back in the result."""
    result = Removal()
    items = list(leavers.items())
    for start in range(0, len(items), MAX_MEMBERSHIP_IDS):
        batch = items[start:start + MAX_MEMBERSHIP_IDS]
        try:
            ids = await profile_ids_by_email(klaviyo, [email for _, email in batch])
            if ids:
                await remove_from_list(klaviyo, list_id, list(ids.values()))
        except KlaviyoRequestError:
            result.failed += len(batch)
            continue
        result.removed += len(batch)
        result.removed_positions.update(position for position, _ in batch)
    return result
