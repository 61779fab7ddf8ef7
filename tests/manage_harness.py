"""People calling the management routes through the function objects, with the principal
header as App Service Authentication sends it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest

import function_app
from exporter.manage.principal import HEADER, encode
from tests.app_harness import App, call

ADMIN_ID = "a0000000-0000-4000-8000-000000000001"
CONTRIBUTOR_ID = "c0000000-0000-4000-8000-000000000002"
OTHER_ID = "c0000000-0000-4000-8000-000000000003"
GROUP_ID = "90000000-0000-4000-8000-000000000004"
NEW_KEY = "pk_new_connection_key_0001"

ADMIN = {HEADER: encode(ADMIN_ID, ("Exporter.Admin",), name="Ada Admin")}
CONTRIBUTOR = {HEADER: encode(CONTRIBUTOR_ID, ("Exporter.Contributor",), (GROUP_ID,), name="Cy Contributor")}
OUTSIDER = {HEADER: encode(OTHER_ID, ("Exporter.Contributor",), name="Olly Outsider")}
NO_ROLE = {HEADER: encode(OTHER_ID, (), name="No Role")}
WRITE = {"X-Exporter-Request": "1"}

ROUTES = {  # function -> (method, route template)
    "manage_me": "manage/me", "manage_connections": "manage/connections",
    "manage_connection": "manage/connections/{name}", "manage_exports": "manage/exports",
    "manage_export": "manage/exports/{name}", "manage_runs": "manage/exports/{name}/runs",
    "manage_run_status": "manage/exports/{name}/runs/{run_id}",
    "manage_run_file": "manage/exports/{name}/runs/{run_id}/{file}",
}


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def etag(self) -> str:
        return self.headers["ETag"]


async def send(function: str, method: str, who: dict[str, str] | None, body: Any = None, *,
               headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
               raw: bytes | None = None, **route: str) -> Answer:
    template = ROUTES[function]
    url = "https://exporter.example/api/" + template.format(**route)
    all_headers = {**(who or {}), **(WRITE if method != "GET" else {}), **(headers or {})}
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
    request = func.HttpRequest(method, url, headers=all_headers, params=query or {}, route_params=route, body=data)
    response = await call(getattr(function_app, function), request)
    payload = response.get_body()
    return Answer(response.status_code, orjson.loads(payload) if payload else {}, dict(response.headers), payload)


def connection_body(**overrides: Any) -> dict[str, Any]:
    return {"display_name": "Klaviyo EU", "users": [GROUP_ID], "privacy_acknowledged": True, "api_key": NEW_KEY,
            **overrides}


def export_body(list_id: str, connection: str = "eu", **overrides: Any) -> dict[str, Any]:
    return {"connection": connection, "source": "eu/", "list_id": list_id, "mapping": {"email": "email"},
            **overrides}


@pytest.fixture
def managed(app: App, tmp_path: Path) -> App:
    """The app with a local secret store in the test's folder and the simulator taking the
    key connections get through the API."""
    app.runtime._env["EXPORTER_SECRETS_FILE"] = str(tmp_path / "home" / "secrets.json")
    app.sim.simulator.config.api_keys.add(NEW_KEY)  # type: ignore[union-attr]
    return app
