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
from operator import attrgetter, methodcaller
from typing import Any

import msgspec

from exporter.simulator.consent import ProfileConsent
from exporter.simulator.typed_import import Attributes, SentAttributes

UNSET = "__unset_properties__"  # a job profile's meta.patch_properties.unset, carried with its attributes

UNDELIVERABLE_TLDS = (".invalid", ".test")


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class SimJob:
    job_id: str
    list_ids: list[str]
    profiles: list[SentAttributes] | None  # dropped once imported, to keep memory flat
    total: int
    created_at: str
    status: str = "queued"
    completed: int = 0
    failed: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

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
    """Profiles are numbered in order of creation (``sim-profile-N``) and held by number:
    a million imported profiles are a list and int-keyed dicts, which cost a third of what
    string ids cost the simulator per profile."""

    def __init__(self, job_delay: float = 0.2, keep_profiles: bool = True):
        self.job_delay = job_delay
        self.keep_profiles = keep_profiles
        self.lists: dict[str, str] = {}  # id -> name
        self.jobs: dict[str, SimJob] = {}
        self._job_ids = itertools.count(1)
        # Profile N's attributes at [N - 1]: as the typed decoder made them until first read
        # or updated, a plain dict from then on.
        self._profiles: list[SentAttributes] = []
        self._number_by_key: dict[str, int] = {}  # lower-cased email (else phone, external id) -> N
        self._members: dict[str, dict[int, None]] = {}  # list id -> profile numbers, in order of joining
        self._consent: dict[int, ProfileConsent] = {}  # profile number -> consent (only once it has any)
        self._lock = threading.Lock()  # jobs are applied in a worker thread; readers take the lock too
        self._held: list[SimJob] | None = None  # jobs waiting for ``release_jobs`` (None: none held)

    def add_list(self, list_id: str, name: str | None = None) -> None:
        self.lists[list_id] = name or list_id
        self._members.setdefault(list_id, {})

    def profile_count(self) -> int:
        return len(self._profiles)

    def profile_ids(self) -> list[str]:
        """Every profile, in order of creation (removal from a list never deletes one)."""
        return [_profile_id(number) for number in range(1, len(self._profiles) + 1)]

    def member_ids(self, list_id: str) -> list[str]:
        with self._lock:
            return list(map(_profile_id, self._members.get(list_id, {})))

    def members_among(self, list_id: str, profile_ids: list[str]) -> list[str]:
        """Those of ``profile_ids`` that are members of the list (without copying the list)."""
        with self._lock:
            members = self._members.get(list_id, {})
            return [p for p in profile_ids if (self._number(p) or 0) in members]

    def member_emails(self, list_id: str) -> list[str]:
        with self._lock:
            return [_email(self._profiles[number - 1]) for number in self._members.get(list_id, {})]

    def attributes(self, profile_id: str) -> dict[str, Any]:
        """A profile's attributes as a dict (what was sent, merged over earlier imports)."""
        number = self._number(profile_id)
        if number is None:
            raise KeyError(profile_id)
        with self._lock:
            return self._dict(number)

    def profile_ids_by_email(self, emails: list[str]) -> list[str]:
        with self._lock:
            found = (self._number_by_key.get(email.lower()) for email in dict.fromkeys(emails))
            return [_profile_id(number) for number in found if number is not None]

    def profile_ids_by(self, field: str, values: list[str]) -> list[str]:
        """Profiles by phone number or external id (a scan: the simulator indexes emails only)."""
        wanted = set(values)
        with self._lock:
            return [_profile_id(number) for number in range(1, len(self._profiles) + 1)
                    if self._dict(number).get(field) in wanted]

    def profile_resource(self, profile_id: str, base_url: str, subscriptions: bool = False) -> dict[str, Any]:
        attributes: dict[str, Any] = dict.fromkeys(("email", "phone_number", "external_id", "first_name", "last_name"))
        attributes.update(self.attributes(profile_id))
        if subscriptions:
            attributes["subscriptions"] = self.consent(profile_id).resource()
        return {"type": "profile", "id": profile_id, "attributes": attributes,
                "links": {"self": f"{base_url}/api/profiles/{profile_id}/"}}

    def consent(self, profile_id: str) -> ProfileConsent:
        """A profile's consent record (never subscribed, until something records otherwise)."""
        number = self._number(profile_id)
        if number is None:
            raise KeyError(profile_id)
        with self._lock:
            return self._consent.setdefault(number, ProfileConsent())

    def subscribe(self, profiles: list[dict[str, Any]], list_id: str, historical: bool, source: str | None) -> None:
        """A subscription job's effect: each profile created or updated by its identifiers,
        subscribed on the channels it names, and added to the list."""
        with self._lock:
            for attributes in profiles:
                identity = {k: attributes[k] for k in ("email", "phone_number") if attributes.get(k)}
                number = self._upsert(identity)
                record = self._consent.setdefault(number, ProfileConsent())
                for channel, parameters in attributes["subscriptions"].items():
                    record.subscribe(channel, parameters["marketing"].get("consented_at"), historical, source)
                self._members[list_id][number] = None

    def opt_out(self, email: str, channel: str, timestamp: str, suppression: str | None) -> None:
        """A person unsubscribing (or a spam complaint, a suppression) in Klaviyo: for tests."""
        with self._lock:
            number = self._number_by_key.get(email.lower())
            if number is None:
                number = self._upsert({"email": email})
            self._consent.setdefault(number, ProfileConsent()).opt_out(channel, timestamp, suppression)

    def remove_members(self, list_id: str, profile_ids: list[str]) -> None:
        """Only the membership goes: the profiles, their consent and suppressions stay. An id
        that names no profile is ignored, as Klaviyo ignores one that is not a member."""
        with self._lock:
            members = self._members[list_id]
            for profile_id in profile_ids:
                members.pop(self._number(profile_id) or 0, None)

    def submit(self, profiles: list[SentAttributes], list_ids: list[str]) -> SimJob:
        job = SimJob(f"sim-job-{next(self._job_ids)}", list_ids, profiles, len(profiles), _now())
        self.jobs[job.job_id] = job
        asyncio.get_running_loop().call_later(self.job_delay / 2, self._start, job)
        return job

    def hold_jobs(self) -> None:
        """Jobs submitted from now on wait (``queued``) until ``release_jobs``: a test can see
        a run between Klaviyo accepting its jobs and finishing them, as a slow Klaviyo would."""
        self._held = []

    def release_jobs(self) -> None:
        held, self._held = self._held or [], None
        for job in held:
            self._start(job)

    def _start(self, job: SimJob) -> None:
        if self._held is not None:
            self._held.append(job)
            return
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
        profiles = job.profiles or []
        if not self.keep_profiles:  # checked when the job was accepted; counted, not kept
            job.completed = len(profiles)
            return
        if not self._insert_new(job, profiles):
            for index, attributes in enumerate(profiles):
                self._import_one(job, index, attributes)

    def _insert_new(self, job: SimJob, profiles: list[SentAttributes]) -> bool:
        """A job of only new, deliverable, distinct emails (a first export) in a few C-level
        steps; ``False``, with nothing changed, when any profile needs ``_import_one``."""
        if not profiles or type(profiles[0]) is not Attributes:
            return False  # the typed decoder made all of a job's profiles, or none
        emails = list(map(attrgetter("email"), profiles))
        if not all(emails):
            return False
        keys = list(map(str.lower, emails))
        if any(map(methodcaller("endswith", UNDELIVERABLE_TLDS), keys)):
            return False
        numbers = range(len(self._profiles) + 1, len(self._profiles) + 1 + len(keys))
        by_key = dict(zip(keys, numbers, strict=True))
        if len(by_key) < len(keys) or not self._number_by_key.keys().isdisjoint(by_key):
            return False  # an email twice in the job, or one already known
        self._profiles.extend(profiles)
        self._number_by_key.update(by_key)
        for list_id in job.list_ids:
            self._members[list_id].update(dict.fromkeys(numbers))
        job.completed = len(keys)
        return True

    def _import_one(self, job: SimJob, index: int, sent: SentAttributes) -> None:
        attributes = _as_dict(sent)
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
            return
        number = self._upsert(attributes)
        for list_id in job.list_ids:
            self._members[list_id][number] = None
        job.completed += 1

    def _upsert(self, attributes: dict[str, Any]) -> int:
        """Create or update a profile: a sent ``null`` clears that field, and ``UNSET`` (a job's
        ``meta.patch_properties.unset``) removes those custom properties."""
        unset = attributes.pop(UNSET, None) if UNSET in attributes else None
        number = self._merge(attributes)
        if unset:
            properties = self._dict(number).get("properties")
            for name in unset if isinstance(properties, dict) else []:
                properties.pop(name, None)  # type: ignore[union-attr]
        return number

    def _merge(self, attributes: dict[str, Any]) -> int:
        key = (attributes.get("email") or attributes.get("phone_number") or attributes.get("external_id") or "").lower()
        number = self._number_by_key.get(key)
        if number is None:  # a new profile: its attributes as sent (the job's copy is dropped when it ends)
            self._profiles.append(attributes)
            number = self._number_by_key[key] = len(self._profiles)
            return number
        current = self._dict(number)
        for name, value in attributes.items():
            if isinstance(value, dict) and isinstance(current.get(name), dict):
                current[name].update(value)
            else:
                current[name] = value
        return number

    def _dict(self, number: int) -> dict[str, Any]:
        """Profile N's attributes as a dict, kept as one from now on (it may be updated)."""
        stored = self._profiles[number - 1]
        if not isinstance(stored, dict):
            stored = self._profiles[number - 1] = _as_dict(stored)
        return stored

    def _number(self, profile_id: str) -> int | None:
        prefix, _, digits = profile_id.rpartition("-")
        number = int(digits) if prefix == "sim-profile" and digits.isdecimal() and len(digits) < 12 else 0
        return number if 1 <= number <= len(self._profiles) else None


def _profile_id(number: int) -> str:
    return f"sim-profile-{number}"


def _as_dict(attributes: SentAttributes) -> dict[str, Any]:
    """What was sent, as JSON has it: typed attributes lose the names that were not sent."""
    return attributes if isinstance(attributes, dict) else msgspec.to_builtins(attributes)


def _email(attributes: SentAttributes) -> str:
    email = attributes.get("email") if isinstance(attributes, dict) else attributes.email
    return email if isinstance(email, str) else ""
