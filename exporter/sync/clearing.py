"""Clearing what was emptied (``clear_emptied``): a value this export set at its last run
that is empty now is cleared in Klaviyo, and nothing else ever is.

The snapshot's line of each member says which mapped fields it had when it was last sent
(``Delta.emptied``); a changed row without one of them clears exactly that one: a standard
field (``phone_number``, ``location.city``, ...) by sending it as ``null``, a custom property
by ``meta.patch_properties.unset`` (both as Klaviyo's profile schema defines them). The
clearing profiles go in bulk import jobs of their own, after the row's own job: clearing
twice is harmless, so a resumed run simply clears again.

A clearing counts only once Klaviyo has finished its job with no profile failed
(``Clearing.confirmed``): otherwise the caller keeps the fields the snapshot knew were set,
so the next run clears them again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.limits import MAX_PROFILES_PER_JOB


def clearing_profile(identity: str, lost: int, tracked: list[str]) -> dict[str, Any]:
    """The profile resource that clears these fields (bit j: ``tracked[j]``) of one member."""
    kind, sep, value = identity.partition(":")
    attributes: dict[str, Any] = {kind: value} if sep and kind in ("phone_number", "external_id") else {"email": identity}
    unset = []
    for j, target in enumerate(tracked):
        if not lost >> j & 1:
            continue
        group, dot, name = target.partition(".")
        if group == "properties":
            unset.append(name)
        elif dot:
            attributes.setdefault(group, {})[name] = None
        else:
            attributes[target] = None
    resource: dict[str, Any] = {"type": "profile", "attributes": attributes}
    if unset:
        resource["meta"] = {"patch_properties": {"unset": unset}}
    return resource


CONFIRM_SECONDS = 600.0  # how long the clearing jobs may take before the run stops waiting
FIRST_POLL, LONGEST_POLL = 0.25, 2.0  # seconds between polls of the clearing jobs, doubling


@dataclass
class Clearing:
    fields: int  # fields the clearing jobs clear
    confirmed: bool  # Klaviyo finished every clearing job with no profile failed


async def clear_emptied(klaviyo: KlaviyoClient, list_id: str, emptied: Iterable[tuple[str, int]],
                        tracked: list[str], deadline: float | None = None) -> Clearing:
    """Send the clearing jobs and wait, up to ``CONFIRM_SECONDS`` and never past ``deadline``
    (event-loop time: a leg's end), for Klaviyo to finish them."""
    cleared = 0
    batch: list[dict[str, Any]] = []
    jobs: set[str] = set()

    async def send() -> None:
        jobs.add(await klaviyo.create_import_job(orjson.dumps({"data": {
            "type": "profile-bulk-import-job", "attributes": {"profiles": {"data": batch}},
            "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}}}})))
        batch.clear()

    for identity, lost in emptied:
        batch.append(clearing_profile(identity, lost, tracked))
        cleared += bin(lost).count("1")
        if len(batch) == MAX_PROFILES_PER_JOB:
            await send()
    if batch:
        await send()
    within = CONFIRM_SECONDS
    if deadline is not None:
        within = min(within, deadline - asyncio.get_running_loop().time())
    return Clearing(cleared, await _finished_cleanly(klaviyo, jobs, within))


async def _finished_cleanly(klaviyo: KlaviyoClient, jobs: set[str], within: float) -> bool:
    """True once Klaviyo has completed every job with no profile failed; False as soon as one
    ends otherwise, or when ``within`` seconds pass first."""
    give_up = time.monotonic() + within
    wait = FIRST_POLL
    while jobs:
        for job_id, status in (await klaviyo.job_statuses(jobs)).items():
            if status.finished:
                if status.status != "complete" or status.failed:
                    return False
                jobs.discard(job_id)
        if jobs:
            if time.monotonic() + wait > give_up:
                return False
            await asyncio.sleep(wait)
            wait = min(2 * wait, LONGEST_POLL)
    return True
