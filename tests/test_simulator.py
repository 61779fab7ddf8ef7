"""The simulator is strict where Klaviyo is: headers, body shape, limits, async jobs."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from exporter.klaviyo.limits import JSONAPI, KLAVIYO_JOB_BYTES, REVISION
from tests.conftest import API_KEY, LIST_ID
from tests.openapi import validator_for

HEADERS = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION, "Content-Type": JSONAPI}


def job_body(profiles: list[dict], list_id: str = LIST_ID) -> dict:
    return {"data": {"type": "profile-bulk-import-job",
                     "attributes": {"profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}},
                     "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}}}}


async def post(sim, body: object, headers: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        async with session.post(f"{sim.url}/api/profile-bulk-import-jobs", data=raw,
                                headers=HEADERS if headers is None else headers) as response:
            return response.status, orjson.loads(await response.read() or b"{}")


async def get(sim, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}{path}", headers=HEADERS) as response:
        return response.status, orjson.loads(await response.read())


@pytest.mark.parametrize("headers, status", [
    ({"revision": REVISION, "Content-Type": JSONAPI}, 401),
    ({"Authorization": "Bearer " + API_KEY, "revision": REVISION, "Content-Type": JSONAPI}, 401),
    ({"Authorization": f"Klaviyo-API-Key {API_KEY}", "Content-Type": JSONAPI}, 400),
    ({"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": "latest", "Content-Type": JSONAPI}, 400),
    ({"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": "2026-07-16", "Content-Type": JSONAPI}, 400),
    ({"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": "1999-01-15", "Content-Type": JSONAPI}, 400),
    ({"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION, "Content-Type": "application/json"}, 415),
])
async def test_headers_are_required(simulator, headers, status) -> None:
    code, body = await post(simulator, job_body([{"email": "a@x.com"}]), headers)
    assert code == status and body["errors"][0]["status"] == status
    assert simulator.simulator.stats.jobs_received == 0


@pytest.mark.parametrize("profile, pointer", [
    ({"email": 5}, "/data/attributes/profiles/data/1/attributes/email"),
    ({"email": "no-at-sign"}, "/data/attributes/profiles/data/1/attributes/email"),
    ({"phone_number": "555-0100"}, "/data/attributes/profiles/data/1/attributes/phone_number"),
    ({"first_name": "only a name"}, "/data/attributes/profiles/data/1"),
    ({"email": "b@x.com", "nickname": "B"}, "/data/attributes/profiles/data/1/attributes/nickname"),
    ({"email": "b@x.com", "location": {"city": 3}}, "/data/attributes/profiles/data/1/attributes/location/city"),
])
async def test_one_malformed_profile_fails_the_whole_request_with_a_pointer(simulator, profile, pointer) -> None:
    status, body = await post(simulator, job_body([{"email": "a@x.com"}, profile]))
    assert status == 400
    assert [e["source"]["pointer"] for e in body["errors"]] == [pointer]
    assert simulator.simulator.stats.jobs_received == 0


async def test_job_limits_are_enforced(simulator) -> None:
    status, body = await post(simulator, job_body([{"email": f"u{i}@x.com"} for i in range(10_001)]))
    assert status == 400 and "at most 10000" in body["errors"][0]["detail"]
    status, _ = await post(simulator, b"x" * (KLAVIYO_JOB_BYTES + 1))
    assert status == 413
    status, body = await post(simulator, job_body([{"email": "a@x.com", "properties": {"p": "x" * 102_400}}]))
    assert status == 400 and body["errors"][0]["title"] == "Profile too large."
    status, _ = await post(simulator, job_body([{"email": "a@x.com"}], list_id="NoSuchList"))
    assert status == 404


async def test_jobs_complete_later_and_answers_match_klaviyos_schemas(simulator) -> None:
    status, created = await post(simulator, job_body([{"email": "a@x.com"}, {"email": "b@x.invalid"}]))
    assert status == 202 and created["data"]["attributes"]["status"] == "queued"
    assert list(validator_for("PostProfileImportJobResponse").iter_errors(created)) == []
    job_id = created["data"]["id"]
    assert simulator.simulator.account.member_emails(LIST_ID) == []  # accepted is not imported
    while (await get(simulator, f"/api/profile-bulk-import-jobs/{job_id}"))[1]["data"]["attributes"]["status"] != "complete":
        await asyncio.sleep(0.01)
    _, job = await get(simulator, f"/api/profile-bulk-import-jobs/{job_id}")
    assert list(validator_for("GetProfileImportJobResponseCompoundDocument").iter_errors(job)) == []
    assert job["data"]["attributes"]["failed_count"] == 1 and job["data"]["attributes"]["completed_count"] == 1
    _, errors = await get(simulator, f"/api/profile-bulk-import-jobs/{job_id}/import-errors")
    assert list(validator_for("GetImportErrorResponseCollection").iter_errors(errors)) == []
    assert errors["data"][0]["attributes"]["source"]["pointer"] == "/data/attributes/profiles/data/1/attributes/email"
    _, listing = await get(simulator, "/api/profile-bulk-import-jobs?sort=-created_at&filter=equals(status,'complete')")
    assert list(validator_for("GetProfileImportJobResponseCollectionCompoundDocument").iter_errors(listing)) == []
    assert [j["id"] for j in listing["data"]] == [job_id]
    assert simulator.simulator.account.member_emails(LIST_ID) == ["a@x.com"]


async def test_a_forgetful_simulator_checks_and_counts_profiles_but_keeps_none(start_simulator) -> None:
    """For benchmarks at 50M profiles (``--forget-profiles``): the same strict checks, jobs that
    complete with every profile counted, and nothing held."""
    sim = await start_simulator(keep_profiles=False)
    status, refused = await post(sim, job_body([{"email": "a@x.com", "phone_number": "12"}]))
    assert status == 400 and refused["errors"][0]["source"]["pointer"].endswith("/phone_number")
    status, created = await post(sim, job_body([{"email": "a@x.com"}, {"email": "b@x.com"}]))
    assert status == 202
    job_id = created["data"]["id"]
    while (await get(sim, f"/api/profile-bulk-import-jobs/{job_id}"))[1]["data"]["attributes"]["status"] != "complete":
        await asyncio.sleep(0.01)
    _, job = await get(sim, f"/api/profile-bulk-import-jobs/{job_id}")
    assert job["data"]["attributes"]["completed_count"] == 2 and sim.simulator.stats.profiles_received == 2
    assert sim.simulator.account.profile_count() == 0 and sim.simulator.account.member_emails(LIST_ID) == []


async def test_rate_limits_answer_429_with_retry_after(simulator) -> None:
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(12):
            async with session.get(f"{simulator.url}/api/profile-bulk-import-jobs", headers=HEADERS) as response:
                statuses.append((response.status, response.headers.get("Retry-After")))
    assert statuses[:10] == [(200, None)] * 10
    assert statuses[10] == (429, "1")


async def test_rate_limits_can_be_switched_off(start_simulator) -> None:
    sim = await start_simulator(rate_limits=False)
    async with aiohttp.ClientSession() as session:
        for _ in range(25):
            async with session.get(f"{sim.url}/api/profile-bulk-import-jobs", headers=HEADERS) as response:
                assert response.status == 200


async def test_random_faults_are_injected_at_the_configured_rate(start_simulator) -> None:
    sim = await start_simulator(fault_rate=0.5, rate_limits=False, latency_seconds=0.01)
    async with aiohttp.ClientSession() as session:
        for _ in range(40):
            try:
                async with session.get(f"{sim.url}/api/lists/{LIST_ID}", headers=HEADERS) as response:
                    await response.read()
            except aiohttp.ClientError:
                pass
    assert 8 <= sim.simulator.stats.faults <= 32


async def test_list_members_are_visible_for_tests_and_the_demo(simulator) -> None:
    await post(simulator, job_body([{"email": "a@x.com"}]))
    while simulator.simulator.account.member_emails(LIST_ID) == []:
        await asyncio.sleep(0.01)
    status, members = await get(simulator, f"/_sim/lists/{LIST_ID}")
    assert status == 200 and members == {"list_id": LIST_ID, "count": 1, "emails": ["a@x.com"]}


# ---- what mirror mode will need: profile lookup by email, list membership removal ----------

async def import_members(sim, emails: list[str]) -> None:
    status, answer = await post(sim, job_body([{"email": e} for e in emails]))
    assert status == 202
    while sim.simulator.account.jobs[answer["data"]["id"]].status != "complete":
        await asyncio.sleep(0.01)


async def remove(sim, body: object, list_id: str = LIST_ID) -> tuple[int, bytes]:
    url = f"{sim.url}/api/lists/{list_id}/relationships/profiles"
    async with aiohttp.ClientSession() as session, session.delete(url, data=orjson.dumps(body), headers=HEADERS) as answer:
        return answer.status, await answer.read()


async def test_profiles_are_found_by_email_filter_case_insensitively_and_match_the_schema(simulator) -> None:
    await import_members(simulator, ["a@x.com", "b@x.com", "c@x.com"])
    status, one = await get(simulator, '/api/profiles?filter=equals(email,"B@x.com")')
    assert status == 200 and [p["attributes"]["email"] for p in one["data"]] == ["b@x.com"]
    status, some = await get(simulator, '/api/profiles?filter=any(email,["a@x.com","c@x.com","nobody@x.com"])'
                                        "&page[size]=1")
    assert status == 200 and len(some["data"]) == 1 and "next" in some["links"]
    _, rest = await get(simulator, some["links"]["next"].split(simulator.url, 1)[1])
    assert [p["attributes"]["email"] for p in some["data"] + rest["data"]] == ["a@x.com", "c@x.com"]
    validator = validator_for("GetProfileResponsePluralConversationsCollectionCompoundDocument")
    assert list(validator.iter_errors(some)) == []


@pytest.mark.parametrize("query, status", [
    ("filter=equals(first_name,\"Ann\")", 400),  # not a field Klaviyo filters profiles by
    ("filter=any(email,[a@x.com])", 400),
    ("filter=any(email,[" + ",".join(f'"u{i}@x.com"' for i in range(101)) + "])", 400),
    ("filter=any(email,[\"a@x.com\"])&page[size]=101", 400),
])
async def test_profile_lookup_refuses_what_klaviyo_would(simulator, query: str, status: int) -> None:
    assert (await get(simulator, f"/api/profiles?{query}"))[0] == status


async def test_removal_takes_members_off_the_list_and_keeps_the_profiles(simulator) -> None:
    await import_members(simulator, ["a@x.com", "b@x.com"])
    [a_id] = simulator.simulator.account.profile_ids_by_email(["a@x.com"])
    status, body = await remove(simulator, {"data": [{"type": "profile", "id": a_id}]})
    assert (status, body) == (204, b"")
    assert simulator.simulator.account.member_emails(LIST_ID) == ["b@x.com"]
    assert simulator.simulator.account.attributes(a_id)["email"] == "a@x.com"  # removed from the list, not deleted


@pytest.mark.parametrize("body, list_id, status", [
    ({"data": [{"type": "profile", "id": f"p{i}"} for i in range(1_001)]}, LIST_ID, 400),
    ({"data": []}, LIST_ID, 400),
    ({"data": [{"type": "profile", "attributes": {"email": "a@x.com"}}]}, LIST_ID, 400),
    ({"data": [{"type": "profile", "id": "p1"}]}, "NoSuchList", 404),
])
async def test_removal_is_strict(simulator, body: object, list_id: str, status: int) -> None:
    assert (await remove(simulator, body, list_id))[0] == status


async def test_removal_and_lookup_have_their_own_rate_limits(simulator) -> None:
    statuses = [(await remove(simulator, {"data": [{"type": "profile", "id": "p1"}]}))[0] for _ in range(11)]
    assert statuses[:10] == [204] * 10 and statuses[10] == 429
    lookups = [(await get(simulator, '/api/profiles?filter=equals(email,"a@x.com")'))[0] for _ in range(12)]
    assert lookups == [200] * 12  # 75/s for reads: not throttled by the membership tier


async def test_job_bodies_are_decoded_one_at_a_time(simulator, monkeypatch) -> None:
    """Ten bodies decoded at once in ten threads kept the simulator's event loop waiting for the
    GIL, so it timed arrivals late and throttled a client that had kept the limits. A decode
    that lingers until another one starts shows whether two can ever run together."""
    import threading

    sim = simulator.simulator
    decode = sim._decode_import_job
    running, most, second_started = [0], [0], threading.Event()
    lock = threading.Lock()

    def lingering(raw: bytes):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            if running[0] > 1:
                second_started.set()
        second_started.wait(0.5)  # returns at once if another decode runs beside this one
        with lock:
            running[0] -= 1
        return decode(raw)

    monkeypatch.setattr(sim, "_decode_import_job", lingering)
    answers = await asyncio.gather(*(post(simulator, job_body([{"email": f"u{i}@x.com"}])) for i in range(3)))
    assert [status for status, _ in answers] == [202] * 3
    assert most[0] == 1


async def test_a_successful_answer_carries_the_rate_limit_headers(simulator) -> None:
    async with aiohttp.ClientSession() as session:
        for expected in (749, 748):
            async with session.get(f"{simulator.url}/api/profiles", headers=HEADERS) as response:
                assert response.status == 200
                assert (response.headers["RateLimit-Limit"], response.headers["RateLimit-Remaining"]) == \
                    ("750", str(expected))
                assert 0 < int(response.headers["RateLimit-Reset"]) <= 60


@pytest.mark.parametrize("condition", ["equals(email,'a@x.com')", "any(email,['a@x.com','nobody@x.com'])",
                                       "any(email,[\"a@x.com\", 'nobody@x.com'])"])
async def test_filter_values_may_be_single_or_double_quoted(simulator, condition) -> None:
    from urllib.parse import quote

    status, _ = await post(simulator, job_body([{"email": "a@x.com"}]))
    assert status == 202
    for _ in range(100):
        code, body = await get(simulator, f"/api/profiles?filter={quote(condition, safe='')}")
        if body["data"]:
            break
        await asyncio.sleep(0.05)
    assert code == 200 and [p["attributes"]["email"] for p in body["data"]] == ["a@x.com"]
