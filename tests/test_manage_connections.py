"""Connections as an administrator sets them up, through the function objects with Azurite,
the simulator and the local secret store: roles, the privacy agreement, the key checked by
Klaviyo and kept write-only, ETags, and the audit trail."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import orjson
from azure.storage.blob.aio import BlobServiceClient

from exporter.manage.connections import PRIVACY_NOTICE
from tests.app_harness import App
from tests.manage_harness import ADMIN, ADMIN_ID, CONTRIBUTOR, GROUP_ID, NEW_KEY, NO_ROLE, connection_body, send


async def document_of(app: App) -> dict:
    async with BlobServiceClient.from_connection_string(app.azurite.connection_string) as service:
        container, name = app.config_url.rsplit("/", 2)[1:]
        return orjson.loads(await (await service.get_blob_client(container, name).download_blob()).readall())


async def audit_records(app: App) -> list[dict]:
    async with BlobServiceClient.from_connection_string(app.azurite.connection_string) as service:
        container = service.get_container_client(app.reports)
        if not await container.exists():
            return []
        return [orjson.loads(await (await container.download_blob(b.name)).readall())
                async for b in container.list_blobs(name_starts_with="_audit/")]


def secrets_file(app: App) -> Path:
    return Path(app.runtime._env["EXPORTER_SECRETS_FILE"])


async def test_an_admin_creates_a_connection_whose_key_is_checked_stored_and_never_shown(managed, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    created = await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    assert created.status == 201, created.body
    assert created.body["key"] == "stored" and created.body["klaviyo_account"] == "SimAcc"
    assert created.body["privacy"]["acknowledged_by"] == ADMIN_ID and created.body["privacy"]["notice"] == PRIVACY_NOTICE
    read = await send("manage_connection", "GET", ADMIN, name="eu")
    assert read.status == 200 and read.etag == created.etag and read.body["users"] == [GROUP_ID]
    listed = await send("manage_connections", "GET", ADMIN)
    assert [c["name"] for c in listed.body["connections"]] == ["local", "eu"]
    stored = next(c for c in (await document_of(managed))["connections"] if c["name"] == "eu")
    assert stored["key_vault_secret"] == "klaviyo-connection-eu" and len(stored["key_version"]) == 32
    path = secrets_file(managed)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert orjson.loads(path.read_bytes())["klaviyo-connection-eu"]["versions"][stored["key_version"]] == NEW_KEY
    [record] = await audit_records(managed)
    assert (record["action"], record["kind"], record["name"], record["by"]["object_id"]) == \
        ("create", "connections", "eu", ADMIN_ID)
    assert record["changes"]["key"] == "replaced" and record["changes"]["users"] == {"from": None, "to": [GROUP_ID]}
    everything = b"".join([created.raw, read.raw, listed.raw, orjson.dumps(record),
                           orjson.dumps(await document_of(managed))]) + caplog.text.encode()
    assert NEW_KEY.encode() not in everything and b"pk_new" not in everything
    fields = ["display_name", "key", "key_updated_at", "klaviyo_account", "privacy", "users"]
    assert any(getattr(r, "audit", None) == {"action": "create", "kind": "connections", "name": "eu", "by": ADMIN_ID,
                                             "fields": fields} for r in caplog.records)


async def test_without_the_privacy_agreement_nothing_is_saved_and_the_notice_is_quoted(managed) -> None:
    before = await document_of(managed)
    for agreed in (None, False, "true"):
        body = connection_body(privacy_acknowledged=agreed) if agreed is not None else \
            {k: v for k, v in connection_body().items() if k != "privacy_acknowledged"}
        refused = await send("manage_connection", "PUT", ADMIN, body, name="eu")
        assert refused.status == 400
        [problem] = refused.body["problems"]
        assert problem["field"] == "privacy_acknowledged" and PRIVACY_NOTICE in problem["message"]
    assert await document_of(managed) == before and not secrets_file(managed).exists()


async def test_a_key_klaviyo_refuses_saves_nothing(managed) -> None:
    before = await document_of(managed)
    refused = await send("manage_connection", "PUT", ADMIN, connection_body(api_key="pk_not_an_accepted_key"), name="eu")
    assert refused.status == 400 and refused.body["problems"] == [
        {"field": "api_key", "message": "Klaviyo refused the key (401): check that it is a private API key (pk_...) of "
                                        "the right account; nothing was saved"}]
    assert await document_of(managed) == before and not secrets_file(managed).exists()
    assert await audit_records(managed) == []


async def test_a_key_without_the_accounts_scope_is_accepted_without_an_account(managed) -> None:
    managed.sim.simulator.config.accounts_scope = False
    created = await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    assert created.status == 201 and "klaviyo_account" not in created.body


async def test_contributors_and_people_without_a_role_cannot_touch_connections(managed) -> None:
    created = await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    for who in (CONTRIBUTOR, NO_ROLE):
        for method, body in (("GET", None), ("PUT", connection_body()), ("DELETE", None)):
            refused = await send("manage_connection", method, who, body, headers={"If-Match": created.etag}, name="eu")
            assert refused.status == 403 and NEW_KEY not in refused.raw.decode(), (method, refused.body)
        assert (await send("manage_connections", "GET", who)).status == 403
    assert "Exporter.Admin" in refused.body["error"]


async def test_an_update_needs_the_etag_it_read_and_keeps_the_key_when_none_is_given(managed) -> None:
    created = await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    unconditional = await send("manage_connection", "PUT", ADMIN, {"display_name": "EU"}, name="eu")
    assert unconditional.status == 428
    renamed = await send("manage_connection", "PUT", ADMIN, {"display_name": "EU"}, headers={"If-Match": created.etag},
                         name="eu")
    assert renamed.status == 200 and renamed.body["display_name"] == "EU" and renamed.body["key"] == "stored"
    stale = await send("manage_connection", "PUT", ADMIN, {"display_name": "Stale"}, headers={"If-Match": created.etag},
                       name="eu")
    assert stale.status == 412
    assert (await send("manage_connection", "GET", ADMIN, name="eu")).body["display_name"] == "EU"


async def test_two_writers_with_one_etag_one_wins_and_one_gets_412(managed) -> None:
    created = await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    answers = await asyncio.gather(*(
        send("manage_connection", "PUT", ADMIN, {"display_name": f"Writer {n}"}, headers={"If-Match": created.etag},
             name="eu") for n in (1, 2)))
    assert sorted(a.status for a in answers) == [200, 412]
    winner = next(a for a in answers if a.status == 200)
    assert (await send("manage_connection", "GET", ADMIN, name="eu")).body["display_name"] == \
        winner.body["display_name"]


async def test_a_hand_edit_of_the_document_is_seen_and_outdates_older_etags(managed) -> None:
    created = await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    document = await document_of(managed)
    next(c for c in document["connections"] if c["name"] == "eu")["display_name"] = "Edited by hand"
    await managed.set_config(document)
    read = await send("manage_connection", "GET", ADMIN, name="eu")
    assert read.body["display_name"] == "Edited by hand" and read.etag != created.etag
    stale = await send("manage_connection", "PUT", ADMIN, {"display_name": "X"}, headers={"If-Match": created.etag},
                       name="eu")
    assert stale.status == 412


async def test_a_connection_an_export_uses_cannot_be_deleted(managed) -> None:
    local = await send("manage_connection", "GET", ADMIN, name="local")
    refused = await send("manage_connection", "DELETE", ADMIN, headers={"If-Match": local.etag}, name="local")
    assert refused.status == 409 and "'lapsed'" in refused.body["error"]
    created = await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")
    deleted = await send("manage_connection", "DELETE", ADMIN, headers={"If-Match": created.etag}, name="eu")
    assert deleted.status == 200
    assert (await send("manage_connection", "GET", ADMIN, name="eu")).status == 404
    assert [r["action"] for r in sorted(await audit_records(managed), key=lambda r: r["at"])] == ["create", "delete"]


async def test_a_body_may_not_set_what_the_app_records(managed) -> None:
    for field, value in (("privacy", {"acknowledged_by": ADMIN_ID}), ("key_vault_secret", "someone-elses-secret"),
                         ("key_version", "0" * 32), ("env", "KLAVIYO_API_KEY"), ("klaviyo_account", "Other1"),
                         ("name", "other")):
        refused = await send("manage_connection", "PUT", ADMIN, connection_body(**{field: value}), name="eu")
        assert refused.status == 400 and refused.body["problems"][0]["field"] == field, field
    assert (await send("manage_connection", "GET", ADMIN, name="eu")).status == 404
