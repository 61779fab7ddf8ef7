"""A small stand-in for the Functions host, for local use and tests: it serves the app's
HTTP functions over real HTTP (checking function and admin keys by each route's declared
auth level, as the host does) and hands runs-queue messages to the queue worker.

What it does not do is App Service Authentication: like an app without it, it passes an
``X-MS-CLIENT-PRINCIPAL`` header through untouched, and the app believes it only in local
mode (``EXPORTER_LOCAL_MODE=true``), where a developer plays the platform's part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError

import function_app

MAX_BODY_BYTES = 100 * 1024 * 1024  # the host's own request limit

log = logging.getLogger("devtools.host")


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: tuple[str, ...]
    auth_level: str  # ANONYMOUS | FUNCTION | ADMIN


def http_functions() -> list[HttpFunction]:
    """Every HTTP function of ``function_app`` with its route, methods and auth level, read
    from the decorators as the host's indexing reads them."""
    found = []
    for name in dir(function_app):
        builder = getattr(function_app, name)
        if not (hasattr(builder, "build") and hasattr(builder, "_function")):
            continue
        trigger = builder.build().get_trigger()
        if type(trigger).__name__ == "HttpTrigger":
            methods = tuple(str(getattr(m, "value", m)) for m in trigger.methods)
            found.append(HttpFunction(name, trigger.route, methods, str(getattr(trigger.auth_level, "name",
                                                                                    trigger.auth_level))))
    return found


class LocalHost:
    def __init__(self, function_key: str, master_key: str, pump_queue: bool = True, poll_seconds: float = 0.1,
                 signed_in: str | None = None):
        """``signed_in``: a principal header to add to requests that carry none, as App Service
        Authentication adds the signed-in person's (``scripts/page``, on a developer's machine)."""
        self.function_key, self.master_key = function_key, master_key
        self._signed_in = signed_in
        self._pump_queue, self._poll = pump_queue, poll_seconds
        self._runner: web.AppRunner | None = None
        self._pump: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self, port: int = 0) -> LocalHost:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        for function in http_functions():
            for method in function.methods:
                app.router.add_route(method, "/api/" + function.route, self._handler(function))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        if self._pump_queue:
            self._pump = asyncio.create_task(self._deliver_runs())
        return self

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._runner is not None:
            await self._runner.cleanup()

    def _handler(self, function: HttpFunction) -> Any:
        user_function = None

        async def handle(request: web.Request) -> web.Response:
            nonlocal user_function
            key = request.headers.get("x-functions-key") or request.query.get("code")
            allowed = {"ANONYMOUS": True, "FUNCTION": key in (self.function_key, self.master_key),
                       "ADMIN": key == self.master_key}[function.auth_level]
            if not allowed:
                return web.Response(status=401)
            headers = dict(request.headers)
            if self._signed_in and not any(k.lower() == "x-ms-client-principal" for k in headers):
                headers["X-MS-CLIENT-PRINCIPAL"] = self._signed_in
            incoming = func.HttpRequest(request.method, str(request.url), headers=headers,
                                        params=dict(request.query), route_params=dict(request.match_info),
                                        body=await request.read())
            if user_function is None:  # built once, as the host indexes a function once
                user_function = getattr(function_app, function.name).build().get_user_function()
            answer = await user_function(incoming)
            headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-type"}
            content_type = answer.headers.get("Content-Type") or f"{answer.mimetype}; charset={answer.charset}"
            return web.Response(status=answer.status_code, body=answer.get_body(),
                                headers={**headers, "Content-Type": content_type})
        return handle

    async def _deliver_runs(self) -> None:
        """The queue trigger's part: each visible runs-queue message to ``run_worker``, deleted
        once handled; a failure leaves it to be delivered again, as the host would."""
        from azure.functions.queue import QueueMessage

        worker = function_app.run_worker.build().get_user_function()
        while True:
            queue = function_app.RUNTIME.service().queue
            try:
                async for message in queue.receive_messages(max_messages=1, visibility_timeout=30):
                    await worker(QueueMessage(id=message.id, body=message.content.encode(),
                                              dequeue_count=message.dequeue_count))
                    await queue.delete_message(message)
            except ResourceNotFoundError:
                pass  # no run was started yet: the first creates the queue
            except Exception as exc:  # the host logs and delivers the message again later; so do we
                log.warning("runs queue: %s (the message is delivered again)", exc.__class__.__name__)
            await asyncio.sleep(self._poll)
