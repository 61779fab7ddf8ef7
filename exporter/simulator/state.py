"""What the simulated Klaviyo account holds: lists, profiles and bulk import jobs.

Jobs run later, as Klaviyo's do: ``queued`` at submission, then ``processing``, then
``complete`` after a delay. While a job runs, profiles that pass request validation can
still be refused one by one (import errors): here, addresses in the reserved ``.invalid``
and ``.test`` top-level domains, which no mail server can receive.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

UNDELIVERABLE_TLDS = (".invalid", ".test")


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class SimJob:
    job_id: str
    list_ids: list[str]
    profiles: list[dict[str, Any]] | None  # dropped once imported, to keep memory flat
    total: int
    created_at: str
    status: str = "queued"
    completed: int = 0
    failed: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    profile_ids: list[str] = field(default_factory=list)

    def resource(self, base_url: str) -> dict[str, Any]:
        own = f"{base_url}/api/profile-bulk-import-jobs/{self.job_id}/"
        return {
            "type": "profile-bulk-import-job",
            "id": self.job_id,
            "attributes": {
                "status": self.status,
                "created_at": self.created_at,
                "total_count": self.total,
                "completed_count": self.completed,
                "failed_count": self.failed,
                "completed_at": self.completed_at,
                "expires_at": None,
                "started_at": self.started_at,
            },
            "relationships": {"lists": {
                "data": [{"type": "list", "id": i} for i in self.list_ids],
                "links": {"self": f"{own}relationships/lists/", "related": f"{own}lists/"},
            }},
            "links": {"self": own},
        }


class Account:
    def __init__(self, job_delay: float = 0.2):
        self.job_delay = job_delay
        self.lists: dict[str, str] = {}  # id -> name
        self.members: dict[str, dict[str, None]] = {}  # list id -> profile ids, in order of joining
        self.profiles: dict[str, dict[str, Any]] = {}  # profile id -> attributes
        self.profile_by_email: dict[str, str] = {}
        self.jobs: dict[str, SimJob] = {}
        self._job_ids = itertools.count(1)
        self._profile_ids = itertools.count(1)
        self._lock = threading.Lock()  # jobs are applied in a worker thread; readers take the lock too

    def add_list(self, list_id: str, name: str | None = None) -> None:
        self.lists[list_id] = name or list_id
        self.members.setdefault(list_id, {})

    def member_emails(self, list_id: str) -> list[str]:
        with self._lock:
            return [self.profiles[p].get("email") or "" for p in self.members.get(list_id, {})]

    def profile_ids_by_email(self, emails: list[str]) -> list[str]:
        with self._lock:
            found = (self.profile_by_email.get(email.lower()) for email in dict.fromkeys(emails))
            return [profile_id for profile_id in found if profile_id is not None]

    def profile_resource(self, profile_id: str, base_url: str) -> dict[str, Any]:
        attributes = {key: None for key in ("email", "phone_number", "external_id", "first_name", "last_name")}
        attributes.update(self.profiles[profile_id])
        return {"type": "profile", "id": profile_id, "attributes": attributes,
                "links": {"self": f"{base_url}/api/profiles/{profile_id}/"}}

    def remove_members(self, list_id: str, profile_ids: list[str]) -> None:
        """Only the membership goes: the profiles, their consent and suppressions stay."""
        with self._lock:
            members = self.members[list_id]
            for profile_id in profile_ids:
                members.pop(profile_id, None)

    def submit(self, profiles: list[dict[str, Any]], list_ids: list[str]) -> SimJob:
        job = SimJob(f"sim-job-{next(self._job_ids)}", list_ids, profiles, len(profiles), _now())
        self.jobs[job.job_id] = job
        asyncio.get_running_loop().call_later(self.job_delay / 2, self._start, job)
        return job

    def _start(self, job: SimJob) -> None:
        job.status, job.started_at = "processing", _now()
        loop = asyncio.get_running_loop()
        applied = loop.run_in_executor(None, self._apply, job)  # 10,000 upserts: off the event loop, which times requests
        loop.call_later(self.job_delay / 2, lambda: applied.add_done_callback(lambda _: self._complete(job)))

    def _complete(self, job: SimJob) -> None:
        job.profiles = None
        job.status, job.completed_at = "complete", _now()

    def _apply(self, job: SimJob) -> None:
        with self._lock:
            self._apply_locked(job)
        # What the account now holds lives as long as the simulator: keep the cyclic garbage
        # collector from scanning millions of stored profiles again and again (they hold no
        # cycles; reference counting still frees whatever is dropped).
        gc.freeze()

    def _apply_locked(self, job: SimJob) -> None:
        lists = [self.members[list_id] for list_id in job.list_ids]
        for index, profile in enumerate(job.profiles or []):
            attributes = profile["attributes"]
            email = attributes.get("email")
            if email and email.lower().endswith(UNDELIVERABLE_TLDS):
                job.failed += 1
                job.errors.append({
                    "type": "import-error",
                    "id": f"{job.job_id}-error-{index}",
                    "attributes": {
                        "code": "invalid",
                        "title": "Invalid email address",
                        "detail": "The email domain cannot receive mail.",
                        "source": {"pointer": f"/data/attributes/profiles/data/{index}/attributes/email"},
                        "original_payload": attributes,
                    },
                })
                continue
            profile_id = self._upsert(attributes)
            job.profile_ids.append(profile_id)
            for members in lists:
                members[profile_id] = None
            job.completed += 1

    def _upsert(self, attributes: dict[str, Any]) -> str:
        key = (attributes.get("email") or attributes.get("phone_number") or attributes.get("external_id") or "").lower()
        profile_id = self.profile_by_email.get(key)
        if profile_id is None:  # a new profile: its attributes as sent (the job's copy is dropped when it ends)
            profile_id = f"sim-profile-{next(self._profile_ids)}"
            self.profile_by_email[key] = profile_id
            self.profiles[profile_id] = attributes
            return profile_id
        current = self.profiles[profile_id]
        for name, value in attributes.items():
            if isinstance(value, dict) and isinstance(current.get(name), dict):
                current[name].update(value)
            else:
                current[name] = value
        return profile_id
