"""The management routes against a caller trying to get past them: forged and malformed
principals, the platform's authentication off, names with path characters, oversized
bodies and requests another site's page could make."""

from __future__ import annotations

import base64

import azure.functions as func
import orjson
import pytest

import function_app
from exporter.manage.principal import HEADER, OBJECT_ID_CLAIM, encode
from tests.app_harness import App, call, config, post
from tests.manage_harness import ADMIN, ADMIN_ID, ROUTES, connection_body, send

EVERY_ROUTE = [  # (function, method, route values)
    ("manage_me", "GET", {}), ("manage_connections", "GET", {}),
    *[("manage_connection", m, {"name": "eu"}) for m in ("GET", "PUT", "DELETE")],
    ("manage_exports", "GET", {}),
    *[("manage_export", m, {"name": "vip"}) for m in ("GET", "PUT", "DELETE")],
    ("manage_runs", "POST", {"name": "vip"}), ("manage_runs", "GET", {"name": "vip"}),
    ("manage_run_status", "GET", {"name": "vip", "run_id": "x"}),
    ("manage_run_file", "GET", {"name": "vip", "run_id": "x", "file": "rejects.csv"}),
]
assert {f for f, _, _ in EVERY_ROUTE} == set(ROUTES)


def header(document: object) -> dict[str, str]:
    return {HEADER: base64.b64encode(orjson.dumps(document)).decode()}


@pytest.mark.parametrize("function, method, route", EVERY_ROUTE)
async def test_without_a_principal_every_route_answers_401(app, function: str, method: str, route: dict) -> None:
    answer = await send(function, method, None, connection_body() if method == "PUT" else None, **route)
    assert answer.status == 401 and "sign in" in answer.body["error"]


@pytest.mark.parametrize("function, method, route", EVERY_ROUTE)
async def test_with_authentication_off_and_local_mode_off_a_principal_header_is_a_forgery(
        azurite, simulator, monkeypatch, function: str, method: str, route: dict) -> None:
    app = App(azurite, simulator, 1500, monkeypatch)
    app.runtime._env.pop("EXPORTER_LOCAL_MODE")
    await app.set_config(config())
    answer = await send(function, method, ADMIN, connection_body() if method == "PUT" else None, **route)
    assert answer.status == 401 and "App Service Authentication is not on" in answer.body["error"]
    await app.runtime.aclose()


async def test_with_authentication_on_the_platforms_header_is_believed(azurite, simulator, monkeypatch) -> None:
    app = App(azurite, simulator, 1500, monkeypatch)
    app.runtime._env.pop("EXPORTER_LOCAL_MODE")
    app.runtime._env["WEBSITE_AUTH_ENABLED"] = "True"
    await app.set_config(config())
    answer = await send("manage_me", "GET", ADMIN)
    assert answer.status == 200 and answer.body["object_id"] == ADMIN_ID and answer.body["is_admin"] is True
    await app.runtime.aclose()


async def test_with_authentication_and_local_mode_off_the_run_routes_behave_as_before(azurite, simulator,
                                                                                       monkeypatch) -> None:
    app = App(azurite, simulator, 1500, monkeypatch)
    app.runtime._env.pop("EXPORTER_LOCAL_MODE")
    await app.set_config(config())
    response = await call(function_app.start_run, post("vip", body=b'{"dryRun": true}'))
    assert response.status_code == 202
    await app.runtime.aclose()


@pytest.mark.parametrize("forged, reason", [
    ({HEADER: "not base64 at all!"}, "not base64-encoded JSON"),
    ({HEADER: base64.b64encode(b"{not json").decode()}, "not base64-encoded JSON"),
    (header(["a", "list"]), "no list of claims"),
    (header({"claims": "roles"}), "no list of claims"),
    (header({"claims": [{"typ": "roles", "val": "Exporter.Admin"}]}), "exactly one object id"),
    (header({"claims": [{"typ": OBJECT_ID_CLAIM, "val": "not-a-guid"}, {"typ": "roles", "val": "Exporter.Admin"}]}),
     "exactly one object id"),
    (header({"claims": [{"typ": OBJECT_ID_CLAIM, "val": ADMIN_ID},
                        {"typ": OBJECT_ID_CLAIM, "val": "b0000000-0000-4000-8000-000000000009"},
                        {"typ": "roles", "val": "Exporter.Admin"}]}), "exactly one object id"),
    (header({"claims": [{"typ": OBJECT_ID_CLAIM, "val": ADMIN_ID}, {"typ": "roles", "val": ["Exporter.Admin"]}]}),
     "not a pair of strings"),
    (header({"claims": [{"typ": OBJECT_ID_CLAIM, "val": ADMIN_ID}] * 501}), "over 16384 bytes"),
    ({HEADER: "A" * 20_000}, "over 16384 bytes"),
])
async def test_a_forged_or_malformed_principal_is_refused(app, forged: dict, reason: str) -> None:
    answer = await send("manage_connections", "GET", forged)
    assert answer.status == 401 and reason in answer.body["error"]


async def test_a_role_claim_other_than_the_two_app_roles_gives_nothing(app) -> None:
    for roles in (("Exporter.Administrator",), ("exporter.admin",), ("Admin",)):
        answer = await send("manage_connections", "GET", {HEADER: encode(ADMIN_ID, roles)})
        assert answer.status == 403, roles


@pytest.mark.parametrize("name", ["..", "../exports", "a/b", "a%2Fb", "a\\b", "eu.json", "-eu", "x" * 64, "é"])
async def test_names_with_path_characters_are_refused(managed, name: str) -> None:
    connection = await send("manage_connection", "PUT", ADMIN, connection_body(), name=name)
    assert connection.status == 400 and connection.body["problems"][0]["field"] == "name"
    export = await send("manage_export", "PUT", ADMIN, {"connection": "local", "source": "x/", "list_id": "L1",
                                                         "mapping": {"email": "email"}}, name=name)
    assert export.status == 400 and export.body["problems"][0]["field"] == "name"


async def test_an_oversized_body_is_refused_before_it_is_read(managed) -> None:
    answer = await send("manage_connection", "PUT", ADMIN, raw=b'{"display_name": "' + b"x" * 70_000 + b'"}',
                        name="eu")
    assert answer.status == 413


@pytest.mark.parametrize("body", [b"[1, 2]", b"{not json", b'"text"'])
async def test_a_body_that_is_not_a_json_object_is_refused(managed, body: bytes) -> None:
    answer = await send("manage_connection", "PUT", ADMIN, raw=body, name="eu")
    assert answer.status == 400


async def test_a_change_without_the_custom_header_is_refused_as_cross_site(managed) -> None:
    request_headers = {"X-Exporter-Request": "0"}
    for function, method, route in [r for r in EVERY_ROUTE if r[1] != "GET"]:
        answer = await send(function, method, ADMIN, connection_body() if method == "PUT" else None,
                            headers=request_headers, **route)
        assert answer.status == 403 and "X-Exporter-Request" in answer.body["error"], function
    assert (await send("manage_connection", "GET", ADMIN, name="eu")).status == 404


@pytest.mark.parametrize("asset", ["../__init__.py", "..%2F__init__.py", "%2e%2e%2fapi.js", "app.js%00.html",
                                   "__init__.py", "static", "", "APP.JS", "app.js/", ".."])
async def test_the_page_serves_its_own_files_by_exact_name_only(asset: str) -> None:
    request = func.HttpRequest("GET", f"https://exporter.example/api/ui/{asset}", route_params={"asset": asset},
                               body=b"")
    response = await call(function_app.ui_asset, request)
    assert response.status_code == 404 and response.get_body() == b"not found"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("file", ["../state.json", "state.json", "report.json", "checkpoint.json", "..%2Flatest.json",
                                  "rejects.csv/../state.json", "preview.CSV"])
async def test_a_runs_files_are_only_its_rejects_and_preview(managed, file: str) -> None:
    run = await send("manage_runs", "POST", ADMIN, {"dryRun": True}, name="vip")
    answer = await send("manage_run_file", "GET", ADMIN, name="vip", run_id=run.body["run_id"], file=file)
    assert answer.status == 404 and "has no file" in answer.body["error"]


@pytest.mark.parametrize("run_id", ["../lapsed/20261203T000000Z-abcdef12", "latest", "..", "x" * 300])
async def test_a_run_id_that_is_not_one_addresses_nothing(managed, run_id: str) -> None:
    for function, extra in (("manage_run_status", {}), ("manage_run_file", {"file": "rejects.csv"})):
        answer = await send(function, "GET", ADMIN, name="vip", run_id=run_id, **extra)
        assert answer.status == 404, (function, answer.body)
