"""Async client for the Klaviyo endpoints a list export needs.

One ``aiohttp`` session (injected or owned), one rate limiter shared by every request of
the bulk-import tier, and one retry loop: 429 (honouring ``Retry-After``), 5xx, timeouts
and dropped connections are retried within the policy's budget; 401/403 end the run at
once; a 400 that points at profiles is handed back so those profiles can be rejected and
the rest resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Mapping
from urllib.parse import quote, urlsplit

import orjson

from exporter.errors import KlaviyoAuthError, KlaviyoRequestError
from exporter.klaviyo.auth import ApiKeySource
from exporter.klaviyo.limits import (
    BULK_IMPORT_RATE,
    JSONAPI,
    LIST_MEMBERSHIP_RATE,
    PAGE_SIZE_MAX,
    PROFILE_READ_RATE,
    REVISION,
    SUBSCRIPTION_RATE,
)
from exporter.klaviyo.ratelimit import AsyncRateLimiter, RateLimiter
from exporter.klaviyo.retry import RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    import aiohttp

DEFAULT_BASE_URL = "https://a.klaviyo.com"
_PROFILE_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(?:/attributes/([A-Za-z_]+)(?:/([A-Za-z_]+))?)?")
FIRST_CONNECT_ATTEMPTS = 3  # a host that never answered: give up after this many tries, not the whole budget
FORBIDDEN_ATTEMPTS = 3  # a 403 is tried this many times in all: a CDN challenge passes, a missing scope does not


@dataclass(frozen=True)
class ProfileProblem:
    """Klaviyo's complaint about one profile of a job, by its index in the job."""

    index: int  # -1: Klaviyo gave no pointer to it
    field: str  # attribute path such as "email" or "location.zip"; "" for the whole profile
    reason: str
    email: str | None = None  # lower-cased, from the error's ``original_payload``: finds it when the pointer does not


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
        limiter: RateLimiter | None = None,
        tier_limiters: dict[str, RateLimiter] | None = None,
        timeout_seconds: float = 60.0,
        on_retry: Callable[[str], None] | None = None,
    ):
        """``limiter`` (bulk imports) and ``tier_limiters`` (``membership``, ``profiles``): share
        them between clients of the same Klaviyo account (its limits are per account);
        otherwise each client keeps ``rate_limits`` on its own."""
        self._api_key = api_key
        self._base = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._retry = retry or RetryPolicy()
        self._limiter = limiter or (AsyncRateLimiter(rate_limits) if rate_limits else None)
        self._limiters: dict[str, RateLimiter | None] = {
            "import": self._limiter,
            "membership": AsyncRateLimiter(LIST_MEMBERSHIP_RATE) if rate_limits else None,
            "profiles": AsyncRateLimiter(PROFILE_READ_RATE) if rate_limits else None,
            "subscriptions": AsyncRateLimiter(SUBSCRIPTION_RATE) if rate_limits else None,
        }
        self._limiters.update(tier_limiters or {})
        import aiohttp  # here, not at the top: a dry run with no key never loads the HTTP stack

        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=10)
        self._on_retry = on_retry  # told what failed each time a request is retried (the CLI's progress line)
        self._reached = False  # any answer at all yet: if the very first requests cannot connect, fail fast
        self.throttled = 0  # 429s Klaviyo answered this client
        self.limits_note: str | None = None  # why its limits are shared more narrowly than the account (a hint)

    async def __aenter__(self) -> KlaviyoClient:
        if self._session is None:
            self._session = new_session(32)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def check_list(self, list_id: str) -> str:
        """Fail before reading the segment if the key is refused or the list does not exist."""
        path = f"/api/lists/{quote(list_id, safe='')}"
        try:
            body = await self.request("GET", path, tier=None)
        except NotFound:
            raise NotFound(f"Klaviyo list {list_id!r} does not exist in this account") from None
        with _expecting("GET", path):
            return str(body["data"]["attributes"].get("name", list_id))

    async def create_import_job(self, payload: bytes) -> str:
        """Submit a bulk import job; returns its id. ``202`` only means queued, not imported."""
        body = await self.request("POST", "/api/profile-bulk-import-jobs", payload=payload)
        with _expecting("POST", "/api/profile-bulk-import-jobs"):
            job_id = body["data"]["id"]
            if not isinstance(job_id, str) or not job_id:
                raise TypeError("job id")
            return job_id

    async def job_statuses(self, job_ids: set[str]) -> dict[str, JobStatus]:
        """Statuses of our jobs, up to 100 per request via the job listing (newest first),
        instead of one GET per job, which would eat the tier's 150/min."""
        wanted = set(job_ids)
        found: dict[str, JobStatus] = {}
        path: str | None = f"/api/profile-bulk-import-jobs?sort=-created_at&page[size]={PAGE_SIZE_MAX}"
        pages = 0
        while path and wanted and pages < 10:
            body = await self.request("GET", path)
            pages += 1
            with _expecting("GET", "/api/profile-bulk-import-jobs"):
                for item in body["data"]:
                    if item["id"] in wanted:
                        found[item["id"]] = _job_status(item)
                        wanted.discard(item["id"])
                path = _next_link(body)
        for job_id in wanted:  # older than the pages we read: ask for each directly
            body = await self.request("GET", f"/api/profile-bulk-import-jobs/{job_id}")
            with _expecting("GET", "/api/profile-bulk-import-jobs/{id}"):
                found[job_id] = _job_status(body["data"])
        return found

    async def import_errors(self, job_id: str) -> AsyncIterator[ProfileProblem]:
        path: str | None = f"/api/profile-bulk-import-jobs/{job_id}/import-errors?page[size]={PAGE_SIZE_MAX}"
        while path:
            body = await self.request("GET", path)
            with _expecting("GET", "/api/profile-bulk-import-jobs/{id}/import-errors"):
                problems = [_problem(item["attributes"], payload_too=True) for item in body["data"]]
                path = _next_link(body)
            for problem in problems:
                if problem is not None:
                    yield problem

    async def request(self, method: str, path: str, *, payload: bytes | None = None, tier: str | None = "import") -> Any:
        """One API call with the retry policy; ``tier`` names the rate-limit tier it counts
        against (``import``, ``membership``, ``profiles``; None for untiered reads)."""
        import aiohttp  # loaded with the session already: a lookup

        limiter = self._limiters.get(tier) if tier else None
        assert self._session is not None, "use 'async with KlaviyoClient(...)'"
        url = self._same_origin(path)
        deadline = time.monotonic() + self._retry.budget_seconds
        refreshed_key = False
        attempt = throttles = forbidden = 0  # a 429 is Klaviyo pacing us, not failing: it uses time, not attempts
        while True:
            slot = _Slot(limiter, await limiter.acquire()) if limiter is not None else None
            headers = {
                "Authorization": f"Klaviyo-API-Key {await self._api_key.get()}",
                "revision": REVISION,
                "Accept": JSONAPI,
            }
            if payload is not None:
                headers["Content-Type"] = JSONAPI
            retry_after: float | None = None
            try:
                async with self._session.request(method, url, data=payload, headers=headers, timeout=self._timeout,
                                                 trace_request_ctx=slot) as response:
                    status = response.status
                    raw = await response.read()
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                failure = f"HTTP {status}"
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                status, raw, failure = 0, b"", _network_failure(exc, url, self._timeout.total)
                if not self._reached and isinstance(exc, aiohttp.ClientConnectorError) and attempt + 1 >= FIRST_CONNECT_ATTEMPTS:
                    raise KlaviyoRequestError(f"cannot reach Klaviyo at {_origin_text(url)}: {failure}") from None
            else:
                self._reached = True
            if 200 <= status < 300:
                return _json(raw, method, url)
            if status == 401 and not refreshed_key and await self._api_key.refresh():
                refreshed_key = True
                continue
            if status == 403 and forbidden < FORBIDDEN_ATTEMPTS - 1:
                # A missing scope is final, but a CDN challenge to a shared cloud IP passes: a few tries.
                forbidden += 1
                wait = self._retry.delay(forbidden)
                if time.monotonic() + wait <= deadline:
                    if self._on_retry is not None:
                        self._on_retry(f"Klaviyo denied access (403); trying again in {wait:.1f} s")
                    await asyncio.sleep(wait)
                    continue
            if status in (401, 403):
                raise KlaviyoAuthError(_auth_message(status, raw, forbidden + 1), status)
            if status == 400 and payload is not None:
                problems = _profile_problems(raw)
                if problems:
                    raise InvalidProfiles(problems)
            if status == 404:
                raise NotFound(f"Klaviyo has no {_path_only(url)} (404)")
            if status == 429:
                throttles += 1
                self.throttled += 1
                if self._on_retry is not None:
                    self._on_retry("Klaviyo is throttling (429); waiting as it asks")
                if limiter is not None:
                    limiter.throttled()
                wait = self._retry.delay(throttles, retry_after)
                if time.monotonic() + wait > deadline:
                    raise KlaviyoRequestError(f"Klaviyo kept throttling {method} {_path_only(url)} (429) for "
                                              f"{self._retry.budget_seconds:.0f} s")
                await asyncio.sleep(wait)
                continue
            if status and status < 500:
                raise KlaviyoRequestError(f"Klaviyo refused {method} {_path_only(url)}: {_error_summary(status, raw)}")
            attempt += 1
            wait = self._retry.delay(attempt, retry_after)
            if attempt >= self._retry.max_attempts or time.monotonic() + wait > deadline:
                raise KlaviyoRequestError(
                    f"Klaviyo still failing after {attempt} attempts on {method} {_path_only(url)}: last {failure}"
                )
            if self._on_retry is not None:
                self._on_retry(f"{failure}; retrying in {wait:.1f} s (attempt {attempt + 1})")
            await asyncio.sleep(wait)

    def _same_origin(self, path: str) -> str:
        """A path, or a link from Klaviyo's answer (``links.next``) that stays on the configured
        origin: the API key goes to no other host, whatever an answer says."""
        if "://" not in path:
            return self._base + path
        if _origin(path) != _origin(self._base):
            raise KlaviyoRequestError(f"Klaviyo's answer linked to another host ({_origin(path)}); "
                                      "not followed, so the API key goes nowhere else")
        return path


@dataclass(frozen=True)
class _Slot:
    """A request's place in its rate limiter, moved to when the request really leaves."""

    limiter: RateLimiter
    time: float


async def _headers_sent(session: Any, context: Any, params: Any) -> None:
    slot = context.trace_request_ctx
    if isinstance(slot, _Slot):
        slot.limiter.sent(slot.time)


def new_session(connections: int) -> aiohttp.ClientSession:
    """An HTTP session whose requests tell their rate limiter when their headers are sent: a
    request waits its turn in the limiter, then for the event loop (a block being mapped, the
    connection pool), and Klaviyo counts it when it arrives, not when it was admitted."""
    import aiohttp

    tracing = aiohttp.TraceConfig()
    tracing.on_request_headers_sent.append(_headers_sent)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections), trace_configs=[tracing])


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _network_failure(exc: BaseException, url: str, timeout: float | None) -> str:
    """What went wrong on the wire, in words a person can act on."""
    import aiohttp

    _, host, port = _origin(url)
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {host}:{port}"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name {host}"
        return f"cannot connect to {host}:{port} ({cause.strerror or cause.__class__.__name__})"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer from {host}:{port} within {timeout or 0:.0f} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{host}:{port} closed the connection"
    return f"{exc.__class__.__name__} talking to {host}:{port}"


@contextlib.contextmanager
def _expecting(method: str, path: str) -> Iterator[None]:
    """Klaviyo's answers are input too: one of the wrong shape ends the run with a reason."""
    try:
        yield
    except (KeyError, TypeError, IndexError, ValueError, AttributeError):
        raise KlaviyoRequestError(f"Klaviyo answered {method} {path} with a body of an unexpected shape") from None


def _next_link(body: Mapping[str, Any]) -> str | None:
    link = (body.get("links") or {}).get("next")
    if link is not None and not isinstance(link, str):
        raise TypeError("links.next")
    return link


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        port = -1  # not a port: matches no configured origin
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _json(raw: bytes, method: str, url: str) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise KlaviyoRequestError(f"Klaviyo answered {method} {_path_only(url)} with a body that is not JSON") from None


def _job_status(item: Mapping[str, Any]) -> JobStatus:
    a = item["attributes"]
    return JobStatus(
        job_id=str(item["id"]),
        status=a["status"],
        total=int(a.get("total_count") or 0),
        completed=int(a.get("completed_count") or 0),
        failed=int(a.get("failed_count") or 0),
    )


def _problem(error: Mapping[str, Any], payload_too: bool = False) -> ProfileProblem | None:
    """A complaint about one profile, by the pointer Klaviyo gives and (``payload_too``: an
    import error) the email of its ``original_payload``; None if it names no profile."""
    source = error.get("source")
    pointer = source.get("pointer") if isinstance(source, dict) else None
    match = _PROFILE_POINTER.match(pointer) if isinstance(pointer, str) else None
    email = _payload_email(error.get("original_payload")) if payload_too else None
    if match is None and email is None:
        return None
    index, attribute, sub = match.groups() if match is not None else ("-1", None, None)
    field = f"{attribute}.{sub}" if sub else (attribute or "")
    reason = f"Klaviyo: {error.get('title') or error.get('code') or 'refused'}"
    return ProfileProblem(int(index), field, reason, email)


def _payload_email(payload: Any) -> str | None:
    """The email of an import error's ``original_payload``: the profile's attributes, or the
    profile resource holding them."""
    if isinstance(payload, dict) and isinstance(payload.get("attributes"), dict):
        payload = payload["attributes"]
    email = payload.get("email") if isinstance(payload, dict) else None
    return email.strip().lower() if isinstance(email, str) and email.strip() else None


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


def _auth_message(status: int, raw: bytes, attempts: int) -> str:
    if status == 401:
        return "Klaviyo refused the API key (401): check that it is a valid private key (pk_...)"
    return (f"Klaviyo denied access (403: {_error_summary(status, raw)}) {attempts} times: either the key lacks a "
            "scope this call needs (profiles:read/write, lists:read/write), or Klaviyo's CDN is challenging this "
            "host's IP address (cloud hosts meet it now and then; it passes within minutes)")


def _path_only(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
