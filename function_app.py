"""Azure Functions entry points (Python v2 model). Thin on purpose: each function adapts
its trigger to one call into ``exporter``; all behaviour lives there."""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_binding

from exporter import ui
from exporter.allocator import tune_allocator
from exporter.logsafe import install_everywhere
from exporter.manage import routes as manage
from exporter.runs import api
from exporter.runs.events import quiet_sdk_loggers
from exporter.runs.runtime import AppRuntime

install_everywhere()  # every record masked as it is made, whichever handler the worker emits it through
quiet_sdk_loggers()  # the worker forwards every record it sees, whatever host.json says for these names
tune_allocator()  # runs here are the CLI's long runs; threads the worker started keep the arenas they have

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
RUNTIME = AppRuntime()


def _respond(answer: api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(answer.json(), status_code=answer.status, headers=answer.headers,
                             mimetype=answer.content_type)


def _base_url(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


async def _manage(req: func.HttpRequest, handler: manage.Handler) -> func.HttpResponse:
    request = manage.ManageRequest(req.method.upper(), dict(req.route_params), dict(req.headers), req.get_body(),
                                   dict(req.params), _base_url(req))
    return _respond(await manage.handle(RUNTIME.manage(), request, handler))


@app.timer_trigger(arg_name="timer", schedule="%EXPORT_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def scheduled_exports(timer: func.TimerRequest) -> None:
    await RUNTIME.service().run_scheduled()


@app.route(route="exports/{name}/runs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def start_run(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(await api.start_run(RUNTIME.service(), req.route_params["name"], dict(req.params),
                                        req.get_body(), _base_url(req)))


@app.route(route="exports/{name}/admin-runs", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def start_run_with_overrides(req: func.HttpRequest) -> func.HttpResponse:
    """Only the app's admin (master) key reaches this: overrides that widen removals apply."""
    return _respond(await api.start_run(RUNTIME.service(), req.route_params["name"], dict(req.params),
                                        req.get_body(), _base_url(req), privileged=True))


@app.route(route="exports/{name}/runs/{run_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def run_status(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(await api.run_status(RUNTIME.service(), req.route_params["name"], req.route_params["run_id"]))


@app.route(route="exports", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(await api.list_exports(RUNTIME.service()))


@app.blob_trigger(arg_name="segment", path="%SEGMENTS_CONTAINER%/{name}", connection="AzureWebJobsStorage",
                  source=func.BlobSource.EVENT_GRID)
async def segment_dropped(segment: blob_binding.BlobClient) -> None:
    """An SDK-type binding: the host hands over a client for the blob, not its content, so
    a segment of any size costs nothing here; the exporter streams it itself."""
    await RUNTIME.service().segment_dropped(f"{segment.container_name}/{segment.blob_name}")


@app.queue_trigger(arg_name="message", queue_name="%RUNS_QUEUE%", connection="AzureWebJobsStorage")
async def run_worker(message: func.QueueMessage) -> None:
    await RUNTIME.service().process(message.get_body().decode(), message.dequeue_count or 1)


@app.queue_trigger(arg_name="message", queue_name="%RUNS_QUEUE%-poison", connection="AzureWebJobsStorage")
async def run_poisoned(message: func.QueueMessage) -> None:
    await RUNTIME.service().poisoned(message.get_body().decode())


# ---- people, signed in through Microsoft Entra ID (App Service Authentication) --------------
# ANONYMOUS to the Functions host on purpose: it cannot check a user, only keys, so each of
# these routes checks the signed-in principal and its app role itself (exporter.manage).

@app.route(route="manage/me", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_me(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.me)


@app.route(route="manage/connections", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_connections(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.list_connections)


@app.route(route="manage/connections/{name}", methods=["GET", "PUT", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_connection(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.connection)


@app.route(route="manage/exports", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_exports(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.list_exports)


@app.route(route="manage/exports/{name}", methods=["GET", "PUT", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_export(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.export)


@app.route(route="manage/exports/{name}/runs", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_runs(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.runs)


@app.route(route="manage/exports/{name}/runs/{run_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_run_status(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.run_status)


@app.route(route="manage/exports/{name}/runs/{run_id}/{file}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def manage_run_file(req: func.HttpRequest) -> func.HttpResponse:
    return await _manage(req, manage.run_file)


# ---- the page (static files; what it shows comes from the routes above) ------------------

@app.route(route="ui", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def ui_page(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(ui.asset("index.html"))


@app.route(route="ui/{asset}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def ui_asset(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(ui.asset(req.route_params["asset"]))
