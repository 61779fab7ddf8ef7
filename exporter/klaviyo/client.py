"""Async client for the Klaviyo endpoints a list export needs.

One ``aiohttp`` session (injected or owned), one rate limiter shared by every request of
the bulk-import tier, and one retry loop: 429 (honouring ``Retry-After``), 5xx, timeouts
and dropped connections are retried within the policy's budget; 401/403 end the run at
once; a 400 that points at profiles is handed back so those profiles can be rejected and
the rest resent.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

import aiohttp
import orjson

from exporter.errors import KlaviyoAuthError, KlaviyoRequestError
from exporter.klaviyo.auth import ApiKeySource
from exporter.klaviyo.limits import BULK_IMPORT_RATE, JSONAPI, PAGE_SIZE_MAX, REVISION
from exporter.klaviyo.ratelimit import AsyncRateLimiter
from exporter.klaviyo.retry import RetryPolicy, parse_retry_after

DEFAULT_BASE_URL = "https://a.klaviyo.com"
_PROFILE_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/attributes/([A-Za-z_]+)(?:/([A-Za-z_]+))?)?")
_RETRYABLE_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


@dataclass(frozen=True)
class ProfileProblem:
    """Klaviyo's complaint about one profile of a job, by its index in the job."""

    index: int
    field: str  # attribute path such as "email" or "location.zip"; "" for the whole profile
    reason: str


class InvalidProfiles(Exception):
    """Klaviyo refused a whole job (400) because of these profiles; the others are fine."""

    def __init__(self, problems: list[ProfileProblem]):
        super().__init__(f"{len(problems)} profile(s) refused")
        self.problems = problems


class NotFound(KlaviyoRequestError):
    pass


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    status: str  # queued | processing | complete | cancelled
    total: int
    completed: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.status in ("complete", "cancelled")


class KlaviyoClient:
    """Use as ``async with KlaviyoClient(...) as klaviyo``; the session closes with it."""

    def __init__(
        self,
        api_key: ApiKeySource,
        base_url: str = DEFAULT_BASE_URL,
        *,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        rate_limits: tuple[tuple[int, float], ...] | None = BULK_IMPORT_RATE,
        limiter: AsyncRateLimiter | None = None,
        timeout_seconds: float = 60.0,
    ):
        """``limiter``: share one between clients of the same Klaviyo account (its limits are
        per account); otherwise each client keeps ``rate_limits`` on its own."""
        self._api_key = api_key
        self._base = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._retry = retry or RetryPolicy()
        self._limiter = limiter or (AsyncRateLimiter(rate_limits) if rate_limits else None)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=10)

    async def __aenter__(self) -> KlaviyoClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def check_list(self, list_id: str) -> str:
        """Fail before reading the segment if the key is refused or the list does not exist."""
        try:
            body = await self._request("GET", f"/api/lists/{list_id}", limited=False)
        except NotFound:
            raise NotFound(f"Klaviyo list {list_id!r} does not exist in this account") from None
        return str(body["data"]["attributes"].get("name", list_id))

    async def create_import_job(self, payload: bytes) -> str:
        """Submit a bulk import job; returns its id. ``202`` only means queued, not imported."""
        body = await self._request("POST", "/api/profile-bulk-import-jobs", payload=payload)
        return str(body["data"]["id"])

    async def job_statuses(self, job_ids: set[str]) -> dict[str, JobStatus]:
        """Statuses of our jobs, up to 100 per request via the job listing (newest first),
        instead of one GET per job, which would eat the tier's 150/min."""
        wanted = set(job_ids)
        found: dict[str, JobStatus] = {}
        path: str | None = f"/api/profile-bulk-import-jobs?sort=-created_at&page[size]={PAGE_SIZE_MAX}"
        pages = 0
        while path and wanted and pages < 10:
            body = await self._request("GET", path)
            pages += 1
            for item in body["data"]:
                if item["id"] in wanted:
                    found[item["id"]] = _job_status(item)
                    wanted.discard(item["id"])
            path = (body.get("links") or {}).get("next")
        for job_id in wanted:  # older than the pages we read: ask for each directly
            body = await self._request("GET", f"/api/profile-bulk-import-jobs/{job_id}")
            found[job_id] = _job_status(body["data"])
        return found

    async def import_errors(self, job_id: str) -> AsyncIterator[ProfileProblem]:
        path: str | None = f"/api/profile-bulk-import-jobs/{job_id}/import-errors?page[size]={PAGE_SIZE_MAX}"
        while path:
            body = await self._request("GET", path)
            for item in body["data"]:
                problem = _problem(item["attributes"])
                if problem is not None:
                    yield problem
            path = (body.get("links") or {}).get("next")

    async def _request(self, method: str, path: str, *, payload: bytes | None = None, limited: bool = True) -> Any:
        assert self._session is not None, "use 'async with KlaviyoClient(...)'"
        url = path if path.startswith("http") else self._base + path
        deadline = time.monotonic() + self._retry.budget_seconds
        refreshed_key = False
        attempt = 0
        while True:
            attempt += 1
            if limited and self._limiter is not None:
                await self._limiter.acquire()
            headers = {
                "Authorization": f"Klaviyo-API-Key {await self._api_key.get()}",
                "revision": REVISION,
                "Accept": JSONAPI,
            }
            if payload is not None:
                headers["Content-Type"] = JSONAPI
            retry_after: float | None = None
            try:
                async with self._session.request(method, url, data=payload, headers=headers, timeout=self._timeout) as response:
                    status = response.status
                    raw = await response.read()
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                failure = f"HTTP {status}"
            except _RETRYABLE_ERRORS as exc:
                status, raw, failure = 0, b"", f"{exc.__class__.__name__} on {method} {_path_only(url)}"
            if 200 <= status < 300:
                return orjson.loads(raw) if raw else None
            if status == 401 and not refreshed_key and await self._api_key.refresh():
                refreshed_key = True
                attempt -= 1
                continue
            if status in (401, 403):
                raise KlaviyoAuthError(_auth_message(status, raw))
            if status == 400 and payload is not None:
                problems = _profile_problems(raw)
                if problems:
                    raise InvalidProfiles(problems)
            if status == 404:
                raise NotFound(f"Klaviyo has no {_path_only(url)} (404)")
            if status == 429 and limited and self._limiter is not None:
                self._limiter.throttled()
            if status and status != 429 and status < 500:
                raise KlaviyoRequestError(f"Klaviyo refused {method} {_path_only(url)}: {_error_summary(status, raw)}")
            wait = self._retry.delay(attempt, retry_after)
            if attempt >= self._retry.max_attempts or time.monotonic() + wait > deadline:
                raise KlaviyoRequestError(
                    f"Klaviyo still failing after {attempt} attempts on {method} {_path_only(url)}: last {failure}"
                )
            await asyncio.sleep(wait)


def _job_status(item: Mapping[str, Any]) -> JobStatus:
    a = item["attributes"]
    return JobStatus(
        job_id=str(item["id"]),
        status=a["status"],
        total=int(a.get("total_count") or 0),
        completed=int(a.get("completed_count") or 0),
        failed=int(a.get("failed_count") or 0),
    )


def _problem(error: Mapping[str, Any]) -> ProfileProblem | None:
    pointer = ((error.get("source") or {}).get("pointer")) or ""
    match = _PROFILE_POINTER.match(pointer)
    if match is None:
        return None
    index, attribute, sub = match.groups()
    field = f"{attribute}.{sub}" if sub else (attribute or "")
    reason = f"Klaviyo: {error.get('title') or error.get('code') or 'refused'}"
    return ProfileProblem(int(index), field, reason)


def _profile_problems(raw: bytes) -> list[ProfileProblem]:
    try:
        errors = orjson.loads(raw).get("errors") or []
    except (orjson.JSONDecodeError, AttributeError):
        return []
    problems = [_problem(e) for e in errors]
    if not problems or any(p is None for p in problems):
        return []  # a complaint about the request itself: resending cannot fix it
    return [p for p in problems if p is not None]


def _error_summary(status: int, raw: bytes) -> str:
    try:
        first = orjson.loads(raw)["errors"][0]
        return f"{status} {first.get('code', '')}: {first.get('title') or ''}".strip()
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return f"HTTP {status}"


def _auth_message(status: int, raw: bytes) -> str:
    if status == 401:
        return "Klaviyo refused the API key (401): check that it is a valid private key (pk_...)"
    return f"Klaviyo denied access (403: {_error_summary(status, raw)}): the key needs profiles:write and lists:write scopes"


def _path_only(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
