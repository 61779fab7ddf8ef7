"""The deployed app's HTTP API, from a person's machine: what ``klaviyo-export app`` calls.

Two ways in, as the app has them. Signed in through Microsoft Entra ID (a token from
``azure-identity`` for the app registration's API, so the caller's app roles apply), every
route for people is open (``/api/manage/...``). With a function key, only what automation
may do: list exports, start runs and read them (``/api/exports/...``). Locally, against an
app in local mode, a principal header stands in for the platform's sign-in.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import orjson

from exporter.errors import ConfigError, ExportError

PEOPLE = "/api/manage/exports"
AUTOMATION = "/api/exports"


class AppRefused(ConfigError):
    """The app answered 4xx: the request was wrong or not allowed (the CLI exits 2, a usage error)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class Auth:
    headers: Callable[[], Any]  # async () -> dict of headers for one request
    people: bool  # the routes for signed-in people, or the function key's
    how: str  # for messages


def function_key_auth(key: str) -> Auth:
    async def headers() -> dict[str, str]:
        return {"x-functions-key": key}
    return Auth(headers, False, "a function key")


def token_auth(credential: Any, scope: str) -> Auth:
    """``credential``: an async azure-identity credential (the CLI passes ``DefaultAzureCredential``)."""
    async def headers() -> dict[str, str]:
        token = await credential.get_token(scope)
        return {"Authorization": f"Bearer {token.token}"}
    return Auth(headers, True, "your Microsoft Entra ID sign-in")


def local_principal_auth(header: str) -> Auth:
    async def headers() -> dict[str, str]:
        return {"X-MS-CLIENT-PRINCIPAL": header}
    return Auth(headers, True, "a local principal (an app in local mode only)")


class AppClient:
    def __init__(self, base_url: str, auth: Auth, session: Any):
        if not base_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ConfigError("--url must be the app's https:// address (plain http only for a local app)")
        self._base, self._auth, self._session = base_url.rstrip("/"), auth, session

    async def exports(self) -> list[dict[str, Any]]:
        return (await self._call("GET", PEOPLE if self._auth.people else AUTOMATION))[0]["exports"]

    async def start(self, name: str, dry_run: bool, full: bool) -> dict[str, Any]:
        body = {"dryRun": dry_run, **({"full": True} if full else {})}
        return (await self._call("POST", f"{self._exports()}/{_segment(name)}/runs", body))[0]

    async def status(self, name: str, run_id: str) -> dict[str, Any]:
        return (await self._call("GET", f"{self._exports()}/{_segment(name)}/runs/{_segment(run_id)}"))[0]

    async def follow(self, name: str, run_id: str, on_state: Callable[[dict[str, Any]], None],
                     poll_seconds: float = 2.0) -> dict[str, Any]:
        """Poll the run until it has finished; ``on_state`` sees each state on the way."""
        while True:
            state = await self.status(name, run_id)
            on_state(state)
            if state.get("report") is not None or state.get("status") in ("succeeded", "partial", "failed", "skipped"):
                return state
            await asyncio.sleep(poll_seconds)

    async def put(self, kind: str, name: str, body: dict[str, Any], if_match: str | None) -> tuple[dict[str, Any], str]:
        """Create or replace a connection or export; without ``if_match`` the current ETag is
        read first (the file replaces whatever is stored: what a person putting a file means)."""
        self._require_sign_in(f"putting a {kind[:-1]}")
        path = f"/api/manage/{kind}/{_segment(name)}"
        if if_match is None:
            try:
                if_match = (await self._call("GET", path))[1]
            except AppRefused as exc:
                if exc.status != 404:  # not there yet: created without a precondition
                    raise
        return await self._call("PUT", path, body, {"If-Match": if_match} if if_match else {})

    def _exports(self) -> str:
        return PEOPLE if self._auth.people else AUTOMATION

    def _require_sign_in(self, what: str) -> None:
        if not self._auth.people:
            raise ConfigError(f"{what} needs a sign-in with an app role (leave out the function key)")

    async def _call(self, method: str, path: str, body: Any = None,
                    extra: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
        headers = {**await self._auth.headers(), "Accept": "application/json", **(extra or {})}
        if method != "GET":
            headers["X-Exporter-Request"] = "1"
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self._session.request(method, self._base + path, data=data, headers=headers,
                                         allow_redirects=False) as response:
            raw = await response.read()
            etag = response.headers.get("ETag", "")
            status = response.status
        try:
            answer = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            answer = {}
        if status >= 400 or not isinstance(answer, dict):
            raise _refusal(status, answer if isinstance(answer, dict) else {}, self._auth.how)
        return answer, etag


def _refusal(status: int, answer: dict[str, Any], how: str) -> ExportError:
    message = str(answer.get("error") or f"HTTP {status}")
    problems = answer.get("problems") or []
    for problem in problems:
        if isinstance(problem, dict):
            message += f"\n  {problem.get('field') or '-'}: {problem.get('message')}"
        else:
            message += f"\n  {problem}"
    if status == 401 and not answer:
        message = f"the app refused {how} (401)"
    if 400 <= status < 500:
        return AppRefused(f"{message} (HTTP {status})", status)
    return ExportError(f"{message} (HTTP {status})")


def _segment(value: str) -> str:
    return quote(value, safe="")
