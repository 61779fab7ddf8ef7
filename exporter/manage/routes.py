"""The management API's routes as plain data in, plain data out (``function_app`` adapts).

Every route here is for people signed in through Microsoft Entra ID (App Service
Authentication), never for function keys, which the Functions host checks before any
code runs and which therefore cannot be combined with a user on one route:

GET    /api/manage/me                                  any signed-in caller: roles, usable connections
GET    /api/manage/connections                         Exporter.Admin
GET    /api/manage/connections/{name}                  Exporter.Admin (ETag)
PUT    /api/manage/connections/{name}                  Exporter.Admin; If-Match to change; 201/200
DELETE /api/manage/connections/{name}                  Exporter.Admin; If-Match; 409 while an export uses it
GET    /api/manage/exports                             both roles: the exports on connections they may use
GET    /api/manage/exports/{name}                      both roles, on a connection they may use (ETag)
PUT    /api/manage/exports/{name}                      likewise; If-Match to change; never starts a run
DELETE /api/manage/exports/{name}                      likewise; If-Match; 409 while a run is active
GET    /api/manage/exports/{name}/runs                 likewise: its newest runs, with counts and durations
POST   /api/manage/exports/{name}/runs[?dryRun=true]   likewise; allowMassRemoval: Exporter.Admin only
GET    /api/manage/exports/{name}/runs/{run_id}        likewise
GET    /api/manage/exports/{name}/runs/{run_id}/{file} likewise: rejects.csv, preview.csv (downloads) or
                                                       preview (its rows as JSON, for the page)

A request that changes something must carry ``X-Exporter-Request: 1``: a browser sends no
custom header to another site's API without asking first (CORS), so a page elsewhere
cannot make a signed-in person's browser change anything here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import orjson

from exporter.config import ConfigProblems
from exporter.errors import ConfigError, TransientError
from exporter.manage import run_files
from exporter.manage.backend import Backend, Conflict, NotFoundItem
from exporter.manage.connections import Connections
from exporter.manage.document import DocumentReadOnly
from exporter.manage.editing import Invalid, PreconditionFailed, PreconditionRequired, Preconditions
from exporter.manage.exports import Exports
from exporter.manage.history import run_history, timing
from exporter.manage.principal import NotSignedIn, Principal, caller
from exporter.manage.roles import Forbidden, is_admin, may_use, require_use
from exporter.runs import api
from exporter.runs.api import ApiResponse

MAX_BODY_BYTES = 65_536
CSRF_HEADER = "X-Exporter-Request"
WRITES = ("PUT", "POST", "DELETE", "PATCH")


@dataclass
class ManageRequest:
    method: str
    params: dict[str, str]  # route values
    headers: Mapping[str, str]
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    base_url: str = ""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


Handler = Callable[[Backend, Principal, ManageRequest], Awaitable[ApiResponse]]


async def handle(backend: Backend, request: ManageRequest, handler: Handler) -> ApiResponse:
    """Who is calling, then the handler, with every refusal as the status it means."""
    try:
        principal = caller(request.headers, backend.trusted)
        if request.method in WRITES and request.header(CSRF_HEADER) != "1":
            raise _Refused(403, f"a change needs the header {CSRF_HEADER}: 1 (it keeps other sites' pages from "
                                "acting in your name)")
        if len(request.body) > MAX_BODY_BYTES:
            raise _Refused(413, f"the body is over {MAX_BODY_BYTES:,} bytes")
        return await handler(backend, principal, request)
    except NotSignedIn as exc:
        return _error(401, str(exc), {"WWW-Authenticate": 'Bearer realm="klaviyo-exporter"'})
    except Forbidden as exc:
        return _error(403, str(exc))
    except _Refused as exc:
        return _error(exc.status, str(exc))
    except Invalid as exc:
        return ApiResponse(400, {"error": str(exc), "problems": [p.document() for p in exc.problems]})
    except NotFoundItem as exc:
        return _error(404, str(exc))
    except (Conflict, DocumentReadOnly) as exc:
        return _error(409, str(exc))
    except PreconditionFailed as exc:
        return _error(412, str(exc))
    except PreconditionRequired as exc:
        return _error(428, str(exc))
    except TransientError as exc:
        return _error(503, str(exc), {"Retry-After": "5"})
    except ConfigProblems as exc:
        return ApiResponse(500, {"error": "the exports document is invalid", "problems": exc.problems})
    except ConfigError as exc:
        return _error(500, str(exc))


async def me(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    snapshot = await backend.editor.snapshot()
    usable = [{"name": c.name, "display_name": c.display_name} for c in snapshot.connections().values()
              if may_use(principal, c)]
    return ApiResponse(200, {"object_id": principal.object_id, "name": principal.name,
                             "roles": sorted(principal.roles), "is_admin": is_admin(principal),
                             "connections": usable})


async def list_connections(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    return ApiResponse(200, {"connections": await Connections(backend).listing(principal)})


async def connection(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    connections = Connections(backend)

    async def put(name: str) -> tuple[bool, dict[str, Any], str]:
        return await connections.put(principal, name, _body(request), _preconditions(request))
    return await _item(request, lambda name: connections.get(principal, name),
                       lambda name: connections.delete(principal, name, _preconditions(request)), put)


async def list_exports(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    return ApiResponse(200, {"exports": await Exports(backend).listing(principal), "schedule": backend.schedule})


async def export(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    exports = Exports(backend)

    async def put(name: str) -> tuple[bool, dict[str, Any], str]:
        created, item, etag, warnings = await exports.put(principal, name, _body(request), _preconditions(request))
        return created, {"export": item, "warnings": warnings, "runs": "not started: saving never runs an export; "
                         "it runs with each refresh or on demand"}, etag
    return await _item(request, lambda name: exports.get(principal, name),
                       lambda name: exports.delete(principal, name, _preconditions(request)), put)


async def _item(request: ManageRequest, get: Callable[[str], Awaitable[tuple[dict[str, Any], str]]],
                delete: Callable[[str], Awaitable[None]],
                put: Callable[[str], Awaitable[tuple[bool, dict[str, Any], str]]]) -> ApiResponse:
    """One connection or export by the request's method: read it (with its ETag), delete it, or put it."""
    name = request.params["name"]
    if request.method == "GET":
        shown, etag = await get(name)
        return ApiResponse(200, shown, {"ETag": etag})
    if request.method == "DELETE":
        await delete(name)
        return ApiResponse(200, {"deleted": name})
    created, shown, etag = await put(name)
    return ApiResponse(201 if created else 200, shown, {"ETag": etag})


async def runs(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    name = request.params["name"]
    await _require_export_use(backend, principal, name)
    if request.method == "GET":
        return ApiResponse(200, {"runs": await run_history(backend.service, name)})
    return await api.start_run(backend.service, name, request.query, request.body, request.base_url,
                               privileged=is_admin(principal), route="/api/manage/exports",
                               refusal="only the Exporter.Admin role may widen what a run removes")


async def run_status(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    name = request.params["name"]
    await _require_export_use(backend, principal, name)
    answer = await api.run_status(backend.service, name, request.params["run_id"])
    if answer.status == 200:
        answer.body.update(timing(answer.body))
    return answer


async def run_file(backend: Backend, principal: Principal, request: ManageRequest) -> ApiResponse:
    name, run_id, file = request.params["name"], request.params["run_id"], request.params["file"]
    await _require_export_use(backend, principal, name)
    return await run_files.answer(backend.service.store, name, run_id, file)


async def _require_export_use(backend: Backend, principal: Principal, name: str) -> None:
    config = await backend.service.config()
    if name not in config.exports:
        raise NotFoundItem(f"no export named {name!r}")
    require_use(principal, config.exports[name].connection)


def _preconditions(request: ManageRequest) -> Preconditions:
    return Preconditions(request.header("If-Match"), request.header("If-None-Match"))


def _body(request: ManageRequest) -> dict[str, Any]:
    try:
        body = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise _Refused(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object")
    return body


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, {"error": message}, headers or {})
