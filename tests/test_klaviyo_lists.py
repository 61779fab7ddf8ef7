"""Finding profiles by email and taking them off a list, against the simulator."""

from __future__ import annotations

import asyncio

from exporter.klaviyo.lists import filter_batches, list_members_by, remove_from_list
from tests.conftest import LIST_ID, client_for
from tests.test_klaviyo_client import payload, wait_complete


async def test_leavers_are_found_among_the_lists_members_in_batches_and_removed_in_batches(start_simulator) -> None:
    sim = await start_simulator(rate_limits=False)
    emails = [f"User{i}@x.com" for i in range(1_500)]
    sim.simulator.account.add_list("OTHER")
    async with client_for(sim, rate_limits=None) as client:
        job_id = await client.create_import_job(payload(emails))
        await wait_complete(client, {job_id})
        other = await client.create_import_job(payload(["elsewhere@x.com"], list_id="OTHER"))
        await wait_complete(client, {other})
        leavers = [e.upper() for e in emails[:1_200]] + ["nobody@x.com", "elsewhere@x.com"]
        ids: dict[str, str] = {}
        for batch in filter_batches(leavers):
            ids.update(await list_members_by(client, LIST_ID, "email", batch))
        # Unknown to Klaviyo, or a profile on another list only: not a member, so absent.
        assert len(ids) == 1_200 and "nobody@x.com" not in ids and "elsewhere@x.com" not in ids
        assert await remove_from_list(client, LIST_ID, list(ids.values())) == 1_200
    routes = sim.simulator.stats.by_route
    assert routes["GET /api/lists/{id}/profiles"] == 13  # 1,202 emails, at most 100 a request
    assert routes["DELETE /api/lists/{id}/relationships/profiles"] == 2  # at most 1,000 ids a request
    assert sim.simulator.account.member_emails(LIST_ID) == emails[1_200:]
    assert sim.simulator.account.profile_count() == 1_501  # removed from the list, never deleted


async def test_removals_keep_to_their_own_rate_limit(simulator) -> None:
    async with client_for(simulator) as client:
        await asyncio.gather(*(remove_from_list(client, LIST_ID, [f"p{i}"]) for i in range(15)))
    assert simulator.simulator.stats.throttled == 0
