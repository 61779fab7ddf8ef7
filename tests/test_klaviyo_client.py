"""The Klaviyo client against the simulator: retries, rate limits, auth, 400 pointers."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from exporter.batching import JobBatcher
from exporter.errors import KlaviyoAuthError, KlaviyoRequestError
from exporter.klaviyo.client import InvalidProfiles
from exporter.klaviyo.limits import BULK_IMPORT_RATE
from exporter.klaviyo.ratelimit import AsyncRateLimiter, SlidingWindows
from exporter.mapping import FieldMapping, ProfileMapper
from exporter.mapping.chunks import map_chunk
from exporter.sources.rows import RowBlock
from tests.conftest import LIST_ID, client_for
from tests.openapi import validator_for


def payload(emails: list[str], list_id: str = LIST_ID) -> bytes:
    mapper = ProfileMapper.for_columns(FieldMapping("email"), ["email"])
    chunk = map_chunk(mapper, RowBlock([i + 2 for i in range(len(emails))], [[e] for e in emails]))
    batcher = JobBatcher(list_id)
    [job] = batcher.add(chunk, list(range(len(chunk)))) + batcher.flush()
    return job.payload


async def wait_complete(client, job_ids: set[str]) -> dict:
    while True:
        statuses = await client.job_statuses(job_ids)
        if all(s.finished for s in statuses.values()):
            return statuses
        await asyncio.sleep(0.02)


async def test_a_job_is_submitted_polled_and_lands_in_the_list(simulator) -> None:
    async with client_for(simulator) as client:
        job_id = await client.create_import_job(payload(["a@x.com", "b@x.com"]))
        statuses = await wait_complete(client, {job_id})
    assert statuses[job_id].status == "complete" and statuses[job_id].completed == 2
    assert simulator.simulator.account.member_emails(LIST_ID) == ["a@x.com", "b@x.com"]


@pytest.mark.parametrize("faults", [["429"], ["500", "503"], ["drop"], ["drop", "429", "500"]])
async def test_throttling_server_errors_and_dropped_connections_are_retried(simulator, faults) -> None:
    simulator.simulator.scripted_faults.extend(faults)
    async with client_for(simulator) as client:
        job_id = await client.create_import_job(payload(["a@x.com"]))
        await wait_complete(client, {job_id})
    assert simulator.simulator.stats.faults == len(faults)
    assert simulator.simulator.stats.jobs_received == 1
    assert simulator.simulator.account.member_emails(LIST_ID) == ["a@x.com"]


async def test_retry_after_is_honoured(simulator) -> None:
    simulator.simulator.scripted_faults.append("429")
    async with client_for(simulator) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.create_import_job(payload(["a@x.com"]))
        waited = loop.time() - started
    assert waited >= 1.0  # the simulator said Retry-After: 1; backoff alone would be ~0.02 s


async def test_retries_stop_at_the_budget_with_a_clear_error(simulator) -> None:
    simulator.simulator.scripted_faults.extend(["503"] * 20)
    async with client_for(simulator) as client:
        with pytest.raises(KlaviyoRequestError, match="still failing after 6 attempts.*HTTP 503"):
            await client.create_import_job(payload(["a@x.com"]))
    assert simulator.simulator.stats.jobs_received == 0


async def test_401_fails_at_once_without_a_retry_storm(simulator) -> None:
    async with client_for(simulator, key="pk_wrong_key_000") as client:
        with pytest.raises(KlaviyoAuthError, match="refused the API key"):
            await client.create_import_job(payload(["a@x.com"]))
    assert simulator.simulator.stats.requests == 1


async def test_the_client_rate_limiter_keeps_klaviyos_burst_limit(simulator) -> None:
    async with client_for(simulator) as client:
        ids = await asyncio.gather(*(client.create_import_job(payload([f"u{i}@x.com"])) for i in range(23)))
    assert len(set(ids)) == 23
    assert simulator.simulator.stats.throttled == 0


async def test_without_the_client_limiter_the_simulator_throttles_and_retries_recover(simulator) -> None:
    async with client_for(simulator, rate_limits=None) as client:
        ids = await asyncio.gather(*(client.create_import_job(payload([f"u{i}@x.com"])) for i in range(15)))
        await wait_complete(client, set(ids))
    assert simulator.simulator.stats.throttled > 0
    assert len(simulator.simulator.account.member_emails(LIST_ID)) == 15


async def test_a_400_points_at_the_bad_profiles(start_simulator) -> None:
    sim = await start_simulator(request_rejects=frozenset({"b@x.com"}))
    async with client_for(sim) as client:
        with pytest.raises(InvalidProfiles) as refused:
            await client.create_import_job(payload(["a@x.com", "b@x.com", "c@x.com"]))
    assert [(p.index, p.field) for p in refused.value.problems] == [(1, "email")]
    assert sim.simulator.stats.jobs_received == 0


async def test_import_errors_are_read_with_their_profile_index(simulator) -> None:
    async with client_for(simulator) as client:
        job_id = await client.create_import_job(payload(["a@x.com", "b@x.invalid", "c@x.test"]))
        statuses = await wait_complete(client, {job_id})
        problems = [p async for p in client.import_errors(job_id)]
    assert statuses[job_id].failed == 2
    assert [(p.index, p.field) for p in problems] == [(1, "email"), (2, "email")]


async def test_job_statuses_page_through_many_jobs(simulator) -> None:
    async with client_for(simulator, rate_limits=None) as client:
        ids = [await client.create_import_job(payload([f"u{i}@x.com"])) for i in range(8)]
    # 8 jobs were created; with a page size of 100 one listing request reads all of them
    before = simulator.simulator.stats.requests
    async with client_for(simulator) as client:
        statuses = await client.job_statuses(set(ids))
    assert set(statuses) == set(ids)
    assert simulator.simulator.stats.requests - before == 1


def test_klaviyo_tier_limits_are_the_documented_ones() -> None:
    assert BULK_IMPORT_RATE == ((10, 1.0), (150, 60.0))


def test_what_the_client_sends_matches_klaviyos_official_schema() -> None:
    validator = validator_for("ProfileImportJobCreateQuery")
    mapping = FieldMapping.from_pairs("email", ["tel=phone_number", "fn=first_name", "town=city", "lat=latitude",
                                                "tier=properties.tier", "cid=external_id"])
    mapper = ProfileMapper.for_columns(mapping, ["email", "tel", "fn", "town", "lat", "tier", "cid"])
    chunk = map_chunk(mapper, RowBlock([2], [["a@x.com", "+14155550100", "Ann", "Oslo", "59.9", "gold", "7"]]))
    batcher = JobBatcher(LIST_ID)
    [job] = batcher.add(chunk, [0]) + batcher.flush()
    assert chunk.rejects == []
    body = orjson.loads(job.payload)
    assert list(validator.iter_errors(body)) == []
    body["data"]["type"] = "profile-import-job"  # a wrong type must be caught, or the check checks nothing
    assert list(validator.iter_errors(body))


def test_the_limiter_keeps_both_windows_and_widens_them_after_a_429() -> None:
    clock = [0.0]
    windows = SlidingWindows(BULK_IMPORT_RATE, clock=lambda: clock[0])
    admitted = []
    for _ in range(160):
        while (wait := windows.wait_time()) > 0:
            clock[0] += wait
        admitted.append(clock[0])
    assert admitted[9] == 0.0 and admitted[10] == 1.0  # 10 per second...
    assert admitted[149] == 14.0 and admitted[150] == 60.0  # ...and 150 per minute
    limiter = AsyncRateLimiter(BULK_IMPORT_RATE, margin=0.05, max_margin=0.15)
    limiter.throttled(), limiter.throttled(), limiter.throttled()
    assert limiter.margin == 0.15


def test_a_request_that_leaves_late_moves_its_slot_to_when_it_left() -> None:
    """A request admitted at t=0 but sent at t=0.3 (our event loop was busy) counts from 0.3:
    the server sees it then, so the request ten places later must wait until 1.3, not 1.0."""
    clock = [0.0]
    windows = SlidingWindows(BULK_IMPORT_RATE, clock=lambda: clock[0])
    assert windows.wait_time() == 0.0 and windows.last_admitted == 0.0
    clock[0] = 0.3
    windows.restamp(0.0)
    for _ in range(9):
        assert windows.wait_time() == 0.0
    assert windows.wait_time() == pytest.approx(1.0)  # 10 in the window from 0.3: the next at 1.3
    windows.restamp(-5.0)  # a slot no longer held changes nothing
    assert windows.wait_time() == pytest.approx(1.0)


async def test_each_request_tells_its_limiter_when_its_headers_leave(simulator) -> None:
    """Through a real session to the simulator: every rate-limited request's slot is moved once,
    to a time after it was admitted (the list check is not rate-limited: no slot)."""
    limiter = AsyncRateLimiter(BULK_IMPORT_RATE)
    moved: list[tuple[float, float]] = []
    record = limiter.sent
    limiter.sent = lambda slot: (moved.append((slot, asyncio.get_running_loop().time())), record(slot))  # type: ignore[method-assign]
    async with client_for(simulator, limiter=limiter) as klaviyo:
        await klaviyo.check_list(LIST_ID)
        for _ in range(3):
            await klaviyo.request("GET", f"/api/lists/{LIST_ID}")
    assert len(moved) == 3 and all(then <= now for then, now in moved)
