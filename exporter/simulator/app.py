"""The Klaviyo simulator's HTTP surface: the endpoints a list export uses, answered strictly.

Every ``/api`` request must carry ``Authorization: Klaviyo-API-Key <key>`` and a
``revision`` header; bulk import requests share one burst/steady rate-limit tier and get
``429`` + ``Retry-After`` past it; faults (5xx, dropped connections, latency) can be
injected at a rate or scripted one by one. ``/_sim/...`` is the simulator's own read-only
window for tests and the demo (plus list creation), outside Klaviyo's API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from exporter.klaviyo.limits import (
    BULK_IMPORT_RATE,
    JSONAPI,
    KLAVIYO_JOB_BYTES,
    LIST_MEMBERSHIP_RATE,
    MAX_FILTER_VALUES,
    MAX_MEMBERSHIP_IDS,
    PAGE_SIZE_MAX,
    PROFILE_READ_RATE,
    PUBLISHED_REVISIONS,
    REVISION,
    SUBSCRIPTION_RATE,
)
from exporter.klaviyo.ratelimit import SlidingWindows
from exporter.simulator.state import UNSET, Account
from exporter.simulator.subscriptions import check_subscription_job
from exporter.simulator.typed_import import ImportJob, decode_import_job
from exporter.simulator.validation import check_import_job, error, unset_properties

FAULTS = ("500", "503", "drop", "latency")  # drawn at --fault-rate; scripted faults may also be "429"
_FILTER = re.compile(r"""equals\((email|phone_number|external_id),\s*(?:"([^"]*)"|'([^']*)')\)"""
                     r"""|any\((email|phone_number|external_id),\s*\[(.*)\]\)""")
_QUOTED = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)')\s*(?:,|$)""")
_STATUS_FILTER = re.compile(r"""(equals|any)\(status,\s*\[?(.*?)\]?\)""")


@dataclass
class SimulatorConfig:
    api_keys: set[str] | None = None  # None: any key that looks private (pk_...) is accepted
    rate_limits: bool = True
    fault_rate: float = 0.0
    latency_seconds: float = 0.5
    job_delay: float = 0.2
    seed: int | None = None
    request_rejects: frozenset[str] = frozenset()  # see validation.check_import_job
    account_id: str = "SimAcc"  # what GET /api/accounts names (Klaviyo: six letters and digits)
    accounts_scope: bool = True  # False: keys lack accounts:read, so GET /api/accounts answers 403
    # False: imported profiles are checked and counted but not kept (lists read as empty): for
    # benchmarks at tens of millions of profiles, which the simulator could not hold
    keep_profiles: bool = True


@dataclass
class Stats:
    requests: int = 0
    throttled: int = 0
    faults: int = 0
    jobs_received: int = 0
    profiles_received: int = 0
    last_job_received_at: float | None = None  # wall clock (epoch seconds), for benchmarks
    subscriptions_received: int = 0
    by_route: dict[str, int] = field(default_factory=dict)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSONAPI, headers=headers)


def _tier(request: web.Request) -> str | None:
    """Which of Klaviyo's rate-limit tiers a request counts against."""
    path = request.path
    if path.startswith("/api/profile-bulk-import-jobs"):
        return "import"
    if path == "/api/profile-subscription-bulk-create-jobs":
        return "subscriptions"
    if path.startswith("/api/lists/") and path.endswith("/relationships/profiles") and request.method != "GET":
        return "membership"
    if path == "/api/profiles" or (path.startswith("/api/lists/") and path.endswith("/profiles")
                                   and not path.endswith("/relationships/profiles")):
        return "profiles"
    return None


def _filter_values(text: str) -> tuple[str, list[str]] | None:
    """The field and values of ``equals(FIELD,"v")`` or ``any(FIELD,["v",...])`` for the
    identifiers Klaviyo filters by (email, phone_number, external_id), quoted either way."""
    match = _FILTER.fullmatch(text.strip())
    if match is None:
        return None
    if match.group(1) is not None:
        return match.group(1), [match.group(2) if match.group(2) is not None else match.group(3)]
    values, listed = [], match.group(5)
    position = 0
    while position < len(listed):
        item = _QUOTED.match(listed, position)
        if item is None:
            return None
        values.append(item.group(1) if item.group(1) is not None else item.group(2))
        position = item.end()
    return match.group(4), values


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _parameter_error(detail: str, parameter: str) -> dict[str, Any]:
    return error(400, "invalid", "Invalid input.", detail) | {"source": {"parameter": parameter}}


def _errors(status: int, *errors: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return _json({"errors": list(errors)}, status, headers)


async def _jsonapi_body(request: web.Request) -> Any:
    """A request's JSON:API body, or the error answer Klaviyo gives for its media type or syntax."""
    if request.content_type != JSONAPI:
        return _errors(415, error(415, "unsupported_media_type", "Unsupported media type.",
                                  f"Content-Type must be {JSONAPI}"))
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _errors(400, error(400, "parse_error", "Malformed JSON.", "The body is not valid JSON."))


class KlaviyoSimulator:
    def __init__(self, config: SimulatorConfig | None = None):
        self.config = config or SimulatorConfig()
        self.account = Account(self.config.job_delay, self.config.keep_profiles)
        self.stats = Stats()
        self.scripted_faults: deque[str] = deque()  # consumed one per /api request, before fault_rate
        # Called with the job count each time a job is accepted, before the 202 leaves: tests
        # use it to act at an exact point of a run (kill a worker, deliver a duplicate).
        self.on_job_accepted: Callable[[int], None] | None = None
        # A list lookup that pages wrongly, as a broken proxy or API might: "loop" links each page
        # to itself; "cut" answers half the members and links to a page that fails.
        self.paging_fault: str | None = None
        self._random = random.Random(self.config.seed)
        # One sliding-window log per rate-limit tier, as Klaviyo keeps them per account.
        self._tiers = {"import": SlidingWindows(BULK_IMPORT_RATE), "membership": SlidingWindows(LIST_MEMBERSHIP_RATE),
                       "profiles": SlidingWindows(PROFILE_READ_RATE), "subscriptions": SlidingWindows(SUBSCRIPTION_RATE)}
        # Bodies are decoded one at a time, in one thread: a burst of ten decoded at once in
        # ten threads kept the event loop waiting its turn for the GIL (30-70 ms), so it timed
        # arrivals late and saw rate-limit windows shorter than the client had kept. One after
        # another, each job is also accepted sooner, and the last one no later.
        self._decoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sim-decode")

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=KLAVIYO_JOB_BYTES * 4, middlewares=[self._middleware])

        async def stop_decoder(_: web.Application) -> None:
            self._decoder.shutdown(wait=False, cancel_futures=True)

        app.on_cleanup.append(stop_decoder)
        app.add_routes([
            web.get("/api/accounts", self.get_accounts),
            web.get("/api/lists/{id}", self.get_list),
            web.post("/api/profile-bulk-import-jobs", self.create_job),
            web.get("/api/profile-bulk-import-jobs", self.list_jobs),
            web.get("/api/profile-bulk-import-jobs/{id}", self.get_job),
            web.get("/api/profile-bulk-import-jobs/{id}/import-errors", self.import_errors),
            web.get("/api/profiles", self.get_profiles),
            web.get("/api/lists/{id}/profiles", self.get_list_profiles),
            web.post("/api/profile-subscription-bulk-create-jobs", self.subscribe),
            web.post("/_sim/profiles/opt-out", self.sim_opt_out),
            web.delete("/api/lists/{id}/relationships/profiles", self.remove_members),
            web.get("/_sim/lists/{id}", self.sim_members),
            web.post("/_sim/lists", self.sim_add_list),
            web.get("/_sim/stats", self.sim_stats),
        ])
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        self.stats.requests += 1
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical if resource else request.path}"
        self.stats.by_route[route] = self.stats.by_route.get(route, 0) + 1
        refused = self._check_headers(request)
        if refused is not None:
            return refused
        fault = self._next_fault()
        if fault is not None:
            self.stats.faults += 1
            if fault == "drop":
                assert request.transport is not None
                request.transport.abort()
                raise ConnectionResetError("simulated dropped connection")
            if fault == "latency":
                await asyncio.sleep(self.config.latency_seconds)
            elif fault == "429":
                return self._throttled(1.0)
            else:
                return _errors(int(fault), error(int(fault), "server_error", "Server error.", "Simulated fault."))
        tier = _tier(request)
        if tier is not None and self.config.rate_limits:
            wait = self._tiers[tier].wait_time()
            if wait > 0:
                return self._throttled(wait)
        response = await handler(request)
        if tier is not None and 200 <= response.status < 300:
            limit, remaining, reset = self._tiers[tier].headroom()
            response.headers.update({"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
                                     "RateLimit-Reset": str(reset)})
        return response

    def _throttled(self, wait: float) -> web.Response:
        self.stats.throttled += 1
        seconds = max(1, math.ceil(wait))
        return _errors(429, error(429, "throttled", "Request was throttled.",
                                  f"Request was throttled. Expected available in {seconds} second(s)."),
                       headers={"Retry-After": str(seconds)})

    def _check_headers(self, request: web.Request) -> web.Response | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        accepted = self.config.api_keys
        if scheme != "Klaviyo-API-Key" or not (key in accepted if accepted is not None else key.startswith("pk_")):
            return _errors(401, error(401, "not_authenticated", "Authentication credentials were not provided.",
                                      "Missing or invalid private key."))
        revision = request.headers.get("revision")
        if revision is None or revision.removesuffix(".pre") not in PUBLISHED_REVISIONS:
            return _errors(400, _parameter_error("A valid 'revision' header is required: one Klaviyo published, "
                                                 "such as " + REVISION + ".", "revision"))
        return None

    def _next_fault(self) -> str | None:
        if self.scripted_faults:
            return self.scripted_faults.popleft()
        if self.config.fault_rate and self._random.random() < self.config.fault_rate:
            return self._random.choice(FAULTS)
        return None

    async def get_accounts(self, request: web.Request) -> web.Response:
        """The key's own account, as Klaviyo answers it (a list of one)."""
        if not self.config.accounts_scope:
            return _errors(403, error(403, "permission_denied", "You do not have permission to perform this action.",
                                      "This API key is missing required scopes: accounts:read."))
        account = {"type": "account", "id": self.config.account_id,
                   "attributes": {"test_account": False, "public_api_key": self.config.account_id},
                   "links": {"self": f"{_base(request)}/api/accounts/{self.config.account_id}/"}}
        return _json({"data": [account], "links": {"self": f"{_base(request)}/api/accounts/"}})

    async def get_list(self, request: web.Request) -> web.Response:
        list_id = request.match_info["id"]
        if list_id not in self.account.lists:
            return _errors(404, error(404, "not_found", "Not found.", f"A list with id {list_id} does not exist."))
        return _json({"data": {"type": "list", "id": list_id, "attributes": {"name": self.account.lists[list_id]}}})

    async def create_job(self, request: web.Request) -> web.Response:
        if request.content_type != JSONAPI:
            return _errors(415, error(415, "unsupported_media_type", "Unsupported media type.",
                                      f"Content-Type must be {JSONAPI}"))
        if (request.content_length or 0) > KLAVIYO_JOB_BYTES:
            return _errors(413, error(413, "request_too_large", "Request too large.", "at most 5 MB per request"))
        raw = await request.read()
        if len(raw) > KLAVIYO_JOB_BYTES:
            return _errors(413, error(413, "request_too_large", "Request too large.", "at most 5 MB per request"))
        # Parsing and validating 10,000 profiles takes a while: off the event loop, so other
        # requests are still timed as they arrive (a blocked loop would time them in a burst
        # afterwards and throttle clients that kept to the limits).
        decoded = await asyncio.get_running_loop().run_in_executor(self._decoder, self._decode_import_job, raw)
        if not isinstance(decoded, ImportJob):
            return decoded
        unknown = [i for i in decoded.list_ids if i not in self.account.lists]
        if unknown:
            return _errors(404, error(404, "not_found", "Not found.", f"A list with id {unknown[0]} does not exist.",
                                      "/data/relationships/lists/data/0/id"))
        job = self.account.submit(decoded.profiles, decoded.list_ids)
        self.stats.jobs_received += 1
        if self.on_job_accepted is not None:
            self.on_job_accepted(self.stats.jobs_received)
        self.stats.profiles_received += len(decoded.profiles)
        self.stats.last_job_received_at = time.time()
        return _json({"data": job.resource(_base(request))}, 202)

    def _decode_import_job(self, raw: bytes) -> ImportJob | web.Response:
        """The typed decoder's job if it vouches for the body, else the exact checks' verdict."""
        job = decode_import_job(raw, self.config.request_rejects)
        if job is not None:
            return job
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _errors(400, error(400, "parse_error", "Malformed JSON.", "The body is not valid JSON."))
        problems = check_import_job(body, self.config.request_rejects)
        if problems:
            return _errors(400, *problems)
        relationships = body["data"].get("relationships") or {}
        profiles = [profile["attributes"] if "meta" not in profile else
                    {**profile["attributes"], UNSET: unset_properties(profile["meta"])}
                    for profile in body["data"]["attributes"]["profiles"]["data"]]
        return ImportJob(profiles, [item["id"] for item in (relationships.get("lists") or {}).get("data") or []])

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.account.jobs.get(request.match_info["id"])
        if job is None:
            return _errors(404, error(404, "not_found", "Not found.", "No such job."))
        return _json({"data": job.resource(_base(request)), "links": {"self": str(request.url)}})

    async def list_jobs(self, request: web.Request) -> web.Response:
        jobs = list(self.account.jobs.values())
        sort = request.query.get("sort", "created_at")
        if sort not in ("created_at", "-created_at"):
            return _errors(400, _parameter_error(f"cannot sort by {sort}", "sort"))
        if sort == "-created_at":
            jobs.reverse()
        wanted = request.query.get("filter")
        if wanted:
            match = _STATUS_FILTER.fullmatch(wanted)
            if match is None:
                return _errors(400, _parameter_error("only equals/any on status can be filtered", "filter"))
            statuses = {s.strip().strip("'\"") for s in match.group(2).split(",")}
            jobs = [j for j in jobs if j.status in statuses]
        return self._page(request, [j.resource(_base(request)) for j in jobs])

    async def import_errors(self, request: web.Request) -> web.Response:
        job = self.account.jobs.get(request.match_info["id"])
        if job is None:
            return _errors(404, error(404, "not_found", "Not found.", "No such job."))
        return self._page(request, job.errors)

    async def get_profiles(self, request: web.Request) -> web.Response:
        """Profiles by email: ``filter=equals(email,"a@x.com")`` or ``any(email,["a@x.com",...])``
        (at most 100 values here), cursor pages of at most 100. Emails match case-insensitively."""
        wanted = request.query.get("filter")
        if wanted is None:
            return self._page(request, [self.account.profile_resource(p, _base(request)) for p in self.account.profile_ids()])
        ids = self._filtered(wanted)
        if isinstance(ids, web.Response):
            return ids
        subscriptions = "subscriptions" in request.query.get("additional-fields[profile]", "").split(",")
        return self._page(request, [self.account.profile_resource(p, _base(request), subscriptions) for p in ids])

    def _filtered(self, condition: str) -> list[str] | web.Response:
        """The profile ids a filter names, or the 400 Klaviyo gives for one it cannot read."""
        parsed = _filter_values(condition)
        if parsed is None:
            return _errors(400, _parameter_error("only equals(...) and any(...) of email, phone_number or external_id "
                                                 "can be filtered", "filter"))
        field, values = parsed
        if len(values) > MAX_FILTER_VALUES:
            return _errors(400, _parameter_error(f"at most {MAX_FILTER_VALUES} values in any()", "filter"))
        if field == "email":
            return self.account.profile_ids_by_email(values)
        return self.account.profile_ids_by(field, values)

    async def get_list_profiles(self, request: web.Request) -> web.Response:
        """A list's members, optionally filtered by email as ``get_profiles`` is: only members
        of that list, so a profile off the list is not in the answer."""
        list_id = request.match_info["id"]
        if list_id not in self.account.lists:
            return _errors(404, error(404, "not_found", "Not found.", f"A list with id {list_id} does not exist."))
        wanted = request.query.get("filter")
        if wanted is None:
            ids = self.account.member_ids(list_id)
        else:
            found = self._filtered(wanted)
            if isinstance(found, web.Response):
                return found
            ids = self.account.members_among(list_id, found)
        items = [self.account.profile_resource(p, _base(request)) for p in sorted(ids)]
        if self.paging_fault == "loop":
            return _json({"data": items[:1], "links": {"self": str(request.url), "next": str(request.url)}})
        if self.paging_fault == "cut":
            broken = str(request.url.update_query({"page[cursor]": "not-a-cursor"}))
            return _json({"data": items[:len(items) // 2], "links": {"self": str(request.url), "next": broken}})
        return self._page(request, items)

    async def subscribe(self, request: web.Request) -> web.Response:
        """A subscription bulk job, applied at once (Klaviyo runs it soon after its 202)."""
        body = await _jsonapi_body(request)
        if isinstance(body, web.Response):
            return body
        job = check_subscription_job(body)
        if isinstance(job, list):
            return _errors(400, *job)
        if job.list_id is not None and job.list_id not in self.account.lists:
            return _errors(404, error(404, "not_found", "Not found.", f"A list with id {job.list_id} does not exist."))
        self.account.subscribe(job.profiles, job.list_id or "", job.historical, job.source)
        self.stats.subscriptions_received += len(job.profiles)
        return web.Response(status=202)

    async def sim_opt_out(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.account.opt_out(str(body["email"]), str(body.get("channel", "email")), str(body["timestamp"]),
                             body.get("suppression"))
        return _json({"ok": True})

    async def remove_members(self, request: web.Request) -> web.Response:
        """Removes profiles from a list (never deletes, suppresses or unsubscribes them): 204."""
        list_id = request.match_info["id"]
        body = await _jsonapi_body(request)
        if isinstance(body, web.Response):
            return body
        items = body.get("data") if isinstance(body, dict) and set(body) == {"data"} else None
        if not isinstance(items, list) or not items:
            return _errors(400, error(400, "invalid", "Invalid input.", "data must be a non-empty array", "/data"))
        if len(items) > MAX_MEMBERSHIP_IDS:
            return _errors(400, error(400, "invalid", "Invalid input.",
                                      f"at most {MAX_MEMBERSHIP_IDS} profiles per request, got {len(items)}", "/data"))
        for i, item in enumerate(items):
            if not (isinstance(item, dict) and item.get("type") == "profile" and isinstance(item.get("id"), str)
                    and set(item) == {"type", "id"}):
                return _errors(400, error(400, "invalid", "Invalid input.", "each item needs type 'profile' and an id",
                                          f"/data/{i}"))
        if list_id not in self.account.lists:
            return _errors(404, error(404, "not_found", "Not found.", f"A list with id {list_id} does not exist."))
        self.account.remove_members(list_id, [item["id"] for item in items])
        return web.Response(status=204)

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        try:
            size = int(request.query.get("page[size]", "20"))
            start = int(request.query.get("page[cursor]", "0"))
        except ValueError:
            return _errors(400, error(400, "invalid", "Invalid input.", "bad page parameters"))
        if not 1 <= size <= PAGE_SIZE_MAX:
            return _errors(400, error(400, "invalid", "Invalid input.", f"page[size] must be 1-{PAGE_SIZE_MAX}"))
        links: dict[str, str] = {"self": str(request.url)}
        if start + size < len(items):
            links["next"] = str(request.url.update_query({"page[cursor]": str(start + size)}))
        return _json({"data": items[start:start + size], "links": links})

    async def sim_members(self, request: web.Request) -> web.Response:
        list_id = request.match_info["id"]
        if list_id not in self.account.lists:
            return _json({"error": f"no list {list_id}"}, 404)
        if request.query.get("full", "").lower() in ("1", "true", "yes"):
            profiles = [{"id": p, **self.account.attributes(p), "subscriptions": self.account.consent(p).resource()}
                        for p in self.account.member_ids(list_id)]
            return _json({"list_id": list_id, "count": len(profiles), "profiles": profiles})
        emails = self.account.member_emails(list_id)
        return _json({"list_id": list_id, "count": len(emails), "emails": emails})

    async def sim_add_list(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.account.add_list(str(body["id"]), body.get("name"))
        return _json({"id": body["id"]}, 201)

    async def sim_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.__dict__)
