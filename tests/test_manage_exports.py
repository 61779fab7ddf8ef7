"""Exports as the people allowed on a connection set them up and run them, through the
function objects with Azurite, the simulator and the local secret store."""

from __future__ import annotations

import orjson

from tests.app_harness import SECOND_LIST, App
from tests.conftest import LIST_ID
from tests.manage_harness import ADMIN, CONTRIBUTOR, NEW_KEY, OUTSIDER, connection_body, export_body, send

SEGMENT = b"email,first_name\n" + b"".join(b"person%d@example.com,P%d\n" % (n, n) for n in range(20))


async def set_up(app: App, list_id: str = "EuList") -> None:
    """An admin's connection 'eu' that the contributor's group may use, and a list in its account."""
    app.sim.simulator.account.add_list(list_id, "EU customers")
    assert (await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")).status == 201


async def runs_started(app: App) -> int:
    return len([m async for m in app.runtime.service().queue.peek_messages(max_messages=32)]) \
        if await _queue_exists(app) else 0


async def _queue_exists(app: App) -> bool:
    try:
        await app.runtime.service().queue.get_queue_properties()
        return True
    except Exception:
        return False


async def test_a_contributor_adds_an_export_on_a_connection_they_may_use_and_it_does_not_run(managed) -> None:
    await set_up(managed)
    await managed.put(managed.segments, "eu/customers.csv", SEGMENT)
    saved = await send("manage_export", "PUT", CONTRIBUTOR, export_body("EuList"), name="eu-vip")
    assert saved.status == 201, saved.body
    assert saved.body["export"]["list_id"] == "EuList" and saved.body["warnings"] == []
    assert "not started" in saved.body["runs"] and await runs_started(managed) == 0
    read = await send("manage_export", "GET", CONTRIBUTOR, name="eu-vip")
    assert read.status == 200 and read.etag == saved.etag and read.body["mapping"] == {"email": "email"}
    listed = await send("manage_exports", "GET", CONTRIBUTOR)
    assert [e["name"] for e in listed.body["exports"]] == ["eu-vip"]  # not the 'local' connection's exports
    assert [e["name"] for e in (await send("manage_exports", "GET", ADMIN)).body["exports"]] == \
        ["vip", "lapsed", "paused", "eu-vip"]


async def test_an_export_saved_through_the_api_runs_with_the_key_stored_through_it(managed) -> None:
    await set_up(managed)
    await managed.put(managed.segments, "eu/customers.csv", SEGMENT)
    assert (await send("manage_export", "PUT", CONTRIBUTOR, export_body("EuList"), name="eu-vip")).status == 201
    started = await send("manage_runs", "POST", CONTRIBUTOR, name="eu-vip")
    assert started.status == 202 and "/api/manage/exports/eu-vip/runs/" in started.headers["Location"]
    await managed.deliver()
    state = await send("manage_run_status", "GET", CONTRIBUTOR, name="eu-vip", run_id=started.body["run_id"])
    assert state.body["status"] == "succeeded" and state.body["report"]["counts"]["sent"] == 20
    assert sorted(managed.sim.simulator.account.member_emails("EuList")) == \
        sorted(f"person{n}@example.com" for n in range(20))


async def test_a_contributor_not_among_a_connections_users_gets_403(managed) -> None:
    await set_up(managed)
    refused = await send("manage_export", "PUT", OUTSIDER, export_body("EuList"), name="eu-vip")
    assert refused.status == 403 and "may not use connection 'eu'" in refused.body["error"]
    assert (await send("manage_export", "PUT", CONTRIBUTOR, export_body("EuList"), name="eu-vip")).status == 201
    for function, method, route in (("manage_export", "GET", {}), ("manage_runs", "POST", {}),
                                    ("manage_run_status", "GET", {"run_id": "r" * 10})):
        answer = await send(function, method, OUTSIDER, name="eu-vip", **route)
        assert answer.status == 403, (function, answer.body)
    assert (await send("manage_exports", "GET", OUTSIDER)).body["exports"] == []
    # nor may a contributor take over an export of a connection they cannot use by moving it
    vip = await send("manage_export", "GET", ADMIN, name="vip")
    moved = await send("manage_export", "PUT", CONTRIBUTOR, {**vip.body, "connection": "eu"},
                       headers={"If-Match": vip.etag}, name="vip")
    assert moved.status == 403


async def test_a_list_klaviyo_does_not_have_is_refused_and_nothing_is_saved(managed) -> None:
    await set_up(managed)
    refused = await send("manage_export", "PUT", CONTRIBUTOR, export_body("NoSuch"), name="eu-vip")
    assert refused.status == 400 and refused.body["problems"][0]["field"] == "list_id"
    assert "no list 'NoSuch'" in refused.body["problems"][0]["message"]
    assert (await send("manage_export", "GET", ADMIN, name="eu-vip")).status == 404


async def test_validation_is_the_loaders_with_each_problem_beside_its_field(managed) -> None:
    await set_up(managed)
    refused = await send("manage_export", "PUT", CONTRIBUTOR,
                         export_body("EuList", mode="sometimes", max_remove_fraction=3, mapping={"first_name": "f"}),
                         name="eu-vip")
    assert refused.status == 400
    assert {p["field"] for p in refused.body["problems"]} == {"mode", "max_remove_fraction", "mapping"}


async def test_mapped_columns_missing_from_the_sources_header_are_a_warning(managed) -> None:
    await set_up(managed)
    await managed.put(managed.segments, "eu/customers.csv", SEGMENT)
    saved = await send("manage_export", "PUT", CONTRIBUTOR,
                       export_body("EuList", mapping={"email": "email", "properties.tier": "Tier"}), name="eu-vip")
    assert saved.status == 201 and len(saved.body["warnings"]) == 1
    assert "'Tier'" in saved.body["warnings"][0] and "'first_name'" in saved.body["warnings"][0]
    fresh = await send("manage_export", "PUT", CONTRIBUTOR, export_body("EuList", source="later/"), name="eu-later")
    assert fresh.status == 201 and "no segment at 'later/' yet" in fresh.body["warnings"][0]


async def test_a_body_may_not_take_another_exports_mirrored_list_or_name(managed) -> None:
    await set_up(managed, list_id=SECOND_LIST)
    # 'lapsed' adds to SECOND_LIST: a mirror export there would remove what 'lapsed' adds
    refused = await send("manage_export", "PUT", ADMIN, export_body(SECOND_LIST, mode="mirror"), name="eu-vip")
    assert refused.status == 400 and refused.body["problems"][0]["field"] == "list_id"
    renamed = await send("manage_export", "PUT", ADMIN, export_body(LIST_ID, name="vip"), name="eu-vip")
    assert renamed.status == 400 and renamed.body["problems"][0]["field"] == "name"
    for field in ("audit", "created_by", "etag"):
        extra = await send("manage_export", "PUT", ADMIN, export_body(LIST_ID, **{field: "x"}), name="eu-vip")
        assert extra.status == 400 and extra.body["problems"][0]["field"] == field


async def test_run_overrides_that_widen_removals_are_for_admins_only(managed) -> None:
    await set_up(managed)
    await managed.put(managed.segments, "eu/customers.csv", SEGMENT)
    assert (await send("manage_export", "PUT", CONTRIBUTOR, export_body("EuList"), name="eu-vip")).status == 201
    refused = await send("manage_runs", "POST", CONTRIBUTOR, {"allowMassRemoval": True}, name="eu-vip")
    assert refused.status == 403 and "only the Exporter.Admin role" in refused.body["error"]
    assert await runs_started(managed) == 0
    allowed = await send("manage_runs", "POST", ADMIN, {"allowMassRemoval": True, "dryRun": True}, name="eu-vip")
    assert allowed.status == 202


async def test_an_export_with_an_active_run_cannot_be_deleted(managed) -> None:
    await set_up(managed)
    await managed.put(managed.segments, "eu/customers.csv", SEGMENT)
    saved = await send("manage_export", "PUT", CONTRIBUTOR, export_body("EuList"), name="eu-vip")
    started = await send("manage_runs", "POST", CONTRIBUTOR, name="eu-vip")
    busy = await send("manage_export", "DELETE", CONTRIBUTOR, headers={"If-Match": saved.etag}, name="eu-vip")
    assert busy.status == 409 and started.body["run_id"] in busy.body["error"]
    await managed.deliver()
    deleted = await send("manage_export", "DELETE", CONTRIBUTOR, headers={"If-Match": saved.etag}, name="eu-vip")
    assert deleted.status == 200 and (await send("manage_export", "GET", ADMIN, name="eu-vip")).status == 404


async def test_no_answer_carries_the_key(managed) -> None:
    await set_up(managed)
    answers = [await send("manage_me", "GET", who) for who in (ADMIN, CONTRIBUTOR)]
    answers.append(await send("manage_exports", "GET", ADMIN))
    answers.append(await send("manage_connections", "GET", ADMIN))
    assert all(NEW_KEY.encode() not in a.raw for a in answers)
    me = orjson.loads(answers[1].raw)
    assert me["roles"] == ["Exporter.Contributor"] and me["is_admin"] is False
    assert [c["name"] for c in me["connections"]] == ["eu"]
