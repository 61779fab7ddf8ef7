"""The HTTP API's logic as plain data in, plain data out (the trigger layer adapts it).

POST /api/exports/{name}/runs[?dryRun=true]  -> 202 + Location, 400, 403, 404, 409
     body (optional): {"source", "full", "dryRun"}; function key (automation)
POST /api/exports/{name}/admin-runs          -> the same, and {"allowMassRemoval": true} too;
     the app's admin (master) key only: an override that widens what a run may remove
GET  /api/exports/{name}/runs/{run_id}       -> 200 state (+ report when finished), 404
GET  /api/exports                            -> 200 exports and the last run of each
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from exporter.config import ConfigProblems, UnknownExport
from exporter.errors import ExportError
from exporter.runs.service import ExportService

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body that is not JSON (a file, the page), sent as it is
    content_type: str = "application/json"

    def json(self) -> bytes:
        return self.raw if self.raw is not None else orjson.dumps(self.body)


BODY_FIELDS: dict[str, type] = {"source": str, "full": bool, "allowMassRemoval": bool, "dryRun": bool}
BODY_SHAPE = ('the body may only hold "source" (a blob path in the segments container), "full", '
              '"allowMassRemoval" and "dryRun" (true or false)')


def _error(status: int, message: str, **extra: Any) -> ApiResponse:
    return ApiResponse(status, {"error": message, **extra})


OVERRIDES = ("allowMassRemoval",)  # what widens what a run may remove


async def start_run(service: ExportService, name: str, query: Mapping[str, str], body: bytes,
                    base_url: str, privileged: bool = False, route: str = "/api/exports",
                    refusal: str | None = None) -> ApiResponse:
    """``privileged``: the caller may widen removals (the admin key's route, or an admin signed
    in), so overrides apply; ``refusal`` says why not otherwise; ``route``: where the run's
    status is read by the same kind of caller."""
    flag = query.get("dryRun", "false").strip().lower()
    if flag not in _BOOLEANS:
        return _error(400, f"dryRun must be true or false, got {query.get('dryRun')!r}")
    unknown = sorted(set(query) - {"dryRun", "code"})
    if unknown:
        return _error(400, f"unknown query parameter(s): {', '.join(unknown)}; only dryRun is accepted")
    options: dict[str, Any] = {}
    if body.strip():
        try:
            options = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        if not isinstance(options, dict) or set(options) - set(BODY_FIELDS) \
                or not all(isinstance(options[k], BODY_FIELDS[k]) for k in options):
            return _error(400, BODY_SHAPE)
    widening = [k for k in OVERRIDES if options.get(k)]
    if widening and not privileged:
        return _error(403, f"{', '.join(widening)} widens what a run may remove: " + (refusal or (
            f"a function key cannot ask for it; call POST /api/exports/{name}/admin-runs with the app's admin key "
            "(an administrator's decision), or run without it")))
    source = options.get("source")
    dry_run = _BOOLEANS[flag] or options.get("dryRun", False)
    try:
        result = await service.start(name, dry_run=dry_run, source=source, full=options.get("full", False),
                                     allow_mass_removal=options.get("allowMassRemoval", False))
    except ConfigProblems as exc:
        return _error(500, "the exports configuration is invalid; no run was started", problems=exc.problems)
    except UnknownExport as exc:
        return _error(404, str(exc), known_exports=exc.known)
    except ExportError as exc:
        return _error(400, str(exc))
    if not result.started:
        return _error(409, f"export {name!r} already has an active run", run_id=result.run_id)
    status_url = f"{base_url.rstrip('/')}{route}/{name}/runs/{result.run_id}"
    return ApiResponse(202, {"run_id": result.run_id, "export": name, "status": "queued", "status_url": status_url},
                       {"Location": status_url})


async def run_status(service: ExportService, name: str, run_id: str) -> ApiResponse:
    try:
        state = await service.status(name, run_id)
    except ConfigProblems as exc:
        return _error(500, "the exports configuration is invalid", problems=exc.problems)
    except UnknownExport as exc:
        return _error(404, str(exc), known_exports=exc.known)
    if state is None:
        return _error(404, f"export {name!r} has no run {run_id!r}")
    return ApiResponse(200, state)


async def list_exports(service: ExportService) -> ApiResponse:
    try:
        return ApiResponse(200, {"exports": await service.overview()})
    except ConfigProblems as exc:
        return _error(500, "the exports configuration is invalid", problems=exc.problems)

