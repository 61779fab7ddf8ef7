"""Finding profiles by email and taking them off a list, against the simulator."""

from __future__ import annotations

import asyncio

from exporter.klaviyo.lists import profile_ids_by_email, remove_from_list
from tests.conftest import LIST_ID, client_for
from tests.test_klaviyo_client import payload, wait_complete


async def test_leavers_are_found_by_email_in_batches_and_removed_in_batches(start_simulator) -> None:
    sim = await start_simulator(rate_limits=False)
    emails = [f"User{i}@x.com" for i in range(1_500)]
    async with client_for(sim, rate_limits=None) as client:
        job_id = await client.create_import_job(payload(emails))
        await wait_complete(client, {job_id})
        leavers = [e.upper() for e in emails[:1_200]] + ["nobody@x.com"]
        ids = await profile_ids_by_email(client, leavers)
        assert len(ids) == 1_200 and "nobody@x.com" not in ids  # a leaver Klaviyo does not know is simply absent
        assert await remove_from_list(client, LIST_ID, list(ids.values())) == 1_200
    routes = sim.simulator.stats.by_route
    assert routes["GET /api/profiles"] == 13  # 1,201 emails, at most 100 a request
    assert routes["DELETE /api/lists/{id}/relationships/profiles"] == 2  # at most 1,000 ids a request
    assert sim.simulator.account.member_emails(LIST_ID) == emails[1_200:]
    assert sim.simulator.account.profile_count() == 1_500  # removed from the list, never deleted


async def test_removals_keep_to_their_own_rate_limit(simulator) -> None:
    async with client_for(simulator) as client:
        await asyncio.gather(*(remove_from_list(client, LIST_ID, [f"p{i}"]) for i in range(15)))
    assert simulator.simulator.stats.throttled == 0
