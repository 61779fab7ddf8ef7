"""Mirror mode: members of the snapshot who left the segment come off the Klaviyo list.

A removal is the one thing this product does that can hurt someone (a person taken off a
list stops getting its campaigns, and adding them back can re-trigger "added to list"
flows), so every step has to prove itself first:

- the read was whole and clean (``damage_hold``), and the share of the list is within the
  guard (``guard``) unless a caller allowed to widen it said otherwise;
- each leaver's email, read from the snapshot by position, still hashes to the member's key
  (``checked_leaver_emails``): a shifted or altered snapshot fails the run instead;
- leavers are looked up among the list's own members, and a leaver leaves the snapshot only
  when Klaviyo took them off the list or a complete lookup shows they are not on it. A
  lookup or removal that fails leaves them *pending*: in the snapshot, looked up again by
  the next run, never counted as removed. Lookups and removals keep to the leg's time: a
  leg that runs out hands the rest to the next leg, which goes on where the ledger says.

Removal never deletes, suppresses or unsubscribes a profile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from exporter.errors import KlaviyoRequestError
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.limits import MAX_FILTER_VALUES, MAX_MEMBERSHIP_IDS
from exporter.klaviyo.lists import filter_batches, list_members_by, profiles_by, remove_from_list
from exporter.sources.integrity import ReadIntegrity
from exporter.sync.keys import Keying
from exporter.sync.snapshot import Snapshot, SnapshotDamaged

ALLOW = ("run again with --allow-mass-removal (HTTP: {\"allowMassRemoval\": true} on "
         "POST /api/exports/NAME/admin-runs, with the app's admin key)")


@dataclass
class Removal:
    """What the removal phase did with the run's leavers; also what a leg that hands over
    leaves in the run's ledger, so the next leg goes on from the batch after the last done."""

    leavers: int = 0
    batches: int = 0  # lookup batches done, in their fixed order (leavers by snapshot position)
    looked_up: int = 0
    removed: int = 0  # taken off the list by this run
    not_on_list: int = 0  # a complete lookup among the list's members did not find them
    pending: int = 0  # not confirmed off the list: still in the snapshot, tried again next run
    failed: int = 0  # of ``pending``: their lookup or removal call failed
    gone: set[int] = field(default_factory=set)  # snapshot positions to drop: removed or not on the list
    seconds: float = 0.0  # spent looking up and removing, over every leg
    handed_over: bool = False  # the leg's time ran out: the next leg goes on

    def to_document(self) -> dict[str, object]:
        return {**{k: v for k, v in asdict(self).items() if k != "gone"}, "gone": sorted(self.gone)}

    @classmethod
    def from_document(cls, document: dict[str, object]) -> Removal:
        """A ledger's record, checked field by field (``ValueError`` if anything is off)."""
        numbers = {name: document.get(name) for name in ("leavers", "batches", "looked_up", "removed", "not_on_list",
                                                         "pending", "failed")}
        gone, seconds = document.get("gone"), document.get("seconds", 0.0)
        if not all(type(value) is int and value >= 0 for value in numbers.values()) or not isinstance(gone, list) \
                or not all(type(at) is int and at >= 0 for at in gone) or type(seconds) not in (int, float):
            raise ValueError("a removal record of the wrong shape")
        return cls(**numbers, gone=set(gone), seconds=float(seconds))  # type: ignore[arg-type]


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


def damage_hold(integrity: ReadIntegrity, leavers: int) -> str | None:
    """Why a damaged read removes nobody (no override widens this), or None."""
    if not leavers or integrity.whole:
        return None
    return (f"removals held: the segment was not read whole and undamaged ({integrity.why()}), so {leavers:,} "
            "member(s) missing from this read may still be in the segment; nobody was removed. Mend the file and "
            "run again (no override removes after a damaged read)")


def checked_leaver_emails(emails: Path, positions: list[int], snapshot: Snapshot, keying: Keying) -> dict[int, str]:
    """Position -> email of the members at ``positions`` (ascending), from the snapshot's
    emails (line ``i``: member ``i``), each checked against the member's key."""
    found: dict[int, str] = {}
    wanted = iter(positions)
    target = next(wanted, None)
    with emails.open("rb") as lines:
        for at, line in enumerate(lines):
            if at == target:
                email = line.rstrip(b"\n").partition(b"\t")[0]  # the fields it had follow a tab (clear_emptied)
                if keying.email_keys([email])[0] != snapshot.index.key_at(at):
                    raise SnapshotDamaged(f"the snapshot's email of member {at} does not match its key: the snapshot "
                                          "is damaged; delete it to start over (nobody was removed)")
                found[at] = email.decode("utf-8", "replace")
                target = next(wanted, None)
                if target is None:
                    break
    if target is not None:
        raise SnapshotDamaged("the snapshot holds fewer emails than members; delete it to start over "
                              "(nobody was removed)")
    return found


Record = Callable[[Removal], Awaitable[None]]
IDENTITY_FIELDS = ("email", "phone_number", "external_id")


def _lookup_batches(identities: list[str]) -> list[tuple[str, list[str]]]:
    """Leavers' identities (an email, or ``phone_number:...`` / ``external_id:...``) in lookup
    batches of one field each, in a fixed order: a resumed leg finds the same batches."""
    by_field: dict[str, list[str]] = {field: [] for field in IDENTITY_FIELDS}
    for identity in identities:
        kind, sep, _ = identity.partition(":")
        by_field[kind if sep and kind in by_field and kind != "email" else "email"].append(identity)
    batches = []
    for kind, group in by_field.items():
        prefix = "" if kind == "email" else f"{kind}:"
        for values in filter_batches([identity[len(prefix):] for identity in group]):
            batches.append((kind, [prefix + value for value in values]))
    return batches


async def remove_leavers(klaviyo: KlaviyoClient, list_id: str, leavers: dict[int, str], deadline: float | None = None,
                         progress: Callable[[Removal], None] | None = None, resume: Removal | None = None,
                         record: Record | None = None) -> Removal:
    """``leavers``: snapshot position -> identity (an email, else ``kind:value``). ``deadline``: event-loop time after which the
    leg hands over (after at least one batch, so every leg makes progress); ``resume``: what
    earlier legs of the run did (their batches are not looked up again); ``record`` makes the
    result durable after every removal call, before the next."""
    result = resume if resume is not None and resume.leavers == len(leavers) else Removal(leavers=len(leavers))
    result.handed_over = False
    started = time.monotonic()
    positions = {identity: at for at, identity in leavers.items()}
    batches = _lookup_batches(list(positions))
    members: dict[str, str] = {}  # found, not yet removed: identity -> profile id
    first = result.batches

    async def remove_found() -> None:
        nonlocal started
        if members:
            batch = dict(members)
            members.clear()
            try:
                await remove_from_list(klaviyo, list_id, list(batch.values()))
            except KlaviyoRequestError:
                result.pending += len(batch)
                result.failed += len(batch)
            else:
                result.removed += len(batch)
                result.gone.update(positions[email] for email in batch)
        result.seconds += time.monotonic() - started
        started = time.monotonic()
        if record is not None:
            await record(result)

    for number in range(first, len(batches)):
        if number > first and deadline is not None and asyncio.get_running_loop().time() > deadline:
            result.handed_over = True
            break
        kind, batch = batches[number]
        prefix = "" if kind == "email" else f"{kind}:"
        values = [identity[len(prefix):] for identity in batch]
        try:
            if kind == "external_id":  # a list's members cannot be filtered by it: the profiles, then
                found = await profiles_by(klaviyo, kind, values)
            else:
                found = await list_members_by(klaviyo, list_id, kind, values)
        except KlaviyoRequestError:
            result.pending += len(batch)
            result.failed += len(batch)
        else:
            for identity, value in zip(batch, values, strict=True):
                profile_id = found.get(value.lower() if kind == "email" else value)
                if profile_id is not None:
                    members[identity] = profile_id
                else:
                    result.not_on_list += 1
                    result.gone.add(positions[identity])
        result.looked_up += len(batch)
        result.batches = number + 1
        if len(members) > MAX_MEMBERSHIP_IDS - MAX_FILTER_VALUES:  # the next batch could overflow one call
            await remove_found()
        if progress is not None:
            progress(result)
    await remove_found()
    if progress is not None:
        progress(result)
    return result
