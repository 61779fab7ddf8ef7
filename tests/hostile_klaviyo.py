"""A Klaviyo stand-in that answers what a test scripts, for answers the simulator never
gives on its own: a ``links.next`` to another host, two complaints about one profile, a
``failed_count`` larger than the job. Klaviyo's answers are input like any other.

It speaks HTTP on loopback and records every request it gets (path and whether an API key
came with it), so a test can see exactly what left the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

JSONAPI = "application/vnd.api+json"
Answer = Callable[[web.Request], tuple[int, Any]]


@dataclass
class Seen:
    method: str
    path: str
    had_key: bool


@dataclass
class HostileKlaviyo:
    answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    on_request: Callable[[web.Request], Awaitable[None]] | None = None  # sees each request first (its body)
    _runner: web.AppRunner | None = None

    def script(self, method: str, path: str, *answers: Answer) -> None:
        """Answer ``method path`` with these, one per request; the last one repeats."""
        self.answers[(method, path)] = list(answers)

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, request.path, "Authorization" in request.headers))
        if self.on_request is not None:
            await self.on_request(request)
        queue = self.answers.get((request.method, request.path))
        if not queue:
            return web.Response(status=404, body=b'{"errors": []}', content_type=JSONAPI)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        status, body = answer(request)
        raw = body if isinstance(body, bytes) else orjson.dumps(body)  # bytes: sent as they are
        return web.Response(status=status, body=raw, content_type=JSONAPI)

    async def start(self) -> HostileKlaviyo:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def job_resource(job_id: str, status: str, total: int, failed: int) -> dict[str, Any]:
    return {"type": "profile-bulk-import-job", "id": job_id,
            "attributes": {"status": status, "total_count": total, "completed_count": total - failed,
                           "failed_count": failed}}


def pointer_error(index: int, attribute: str = "", title: str = "Invalid input.") -> dict[str, Any]:
    pointer = f"/data/attributes/profiles/data/{index}" + (f"/attributes/{attribute}" if attribute else "")
    return {"status": 400, "code": "invalid", "title": title, "detail": title, "source": {"pointer": pointer}}
