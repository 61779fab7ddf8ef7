"""The simulator's own strict checks of a bulk import request, as Klaviyo applies them.

Problems come back as JSON:API error objects with a ``source.pointer`` into the body, the
way Klaviyo's all-or-nothing validation answers. Stricter than Klaviyo in one place, on
purpose: an attribute name Klaviyo does not define is refused, to catch client typos.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from exporter.klaviyo.limits import MAX_PROFILE_BYTES, MAX_PROFILES_PER_JOB

STRING_ATTRIBUTES = frozenset(
    {"email", "phone_number", "external_id", "_kx", "first_name", "last_name", "organization", "locale", "title", "image"}
)
LOCATION_STRINGS = frozenset({"address1", "address2", "city", "country", "region", "zip", "timezone", "ip"})
LOCATION_COORDINATES = frozenset({"latitude", "longitude"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
PROFILES = "/data/attributes/profiles/data"


def error(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> dict[str, Any]:
    source = {"pointer": pointer} if pointer else {}
    return {"id": f"sim-{code}", "status": status, "code": code, "title": title, "detail": detail, "source": source}


def check_import_job(body: Any, request_rejects: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Every problem in a ``POST /api/profile-bulk-import-jobs`` body; empty when valid.

    ``request_rejects``: emails to refuse as malformed although they look valid, so tests
    can exercise the client's 400-with-pointer path with rows its own checks accept.
    """
    if not isinstance(body, dict) or set(body) != {"data"} or not isinstance(body["data"], dict):
        return [error(400, "invalid", "Invalid input.", "Body must be an object with only 'data'.", "/data")]
    data = body["data"]
    problems = []
    if data.get("type") != "profile-bulk-import-job":
        problems.append(error(400, "invalid", "Invalid input.", "type must be 'profile-bulk-import-job'", "/data/type"))
    profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
    if not isinstance(profiles, list):
        return problems + [error(400, "invalid", "Invalid input.", "profiles.data must be an array", PROFILES)]
    if not profiles:
        problems.append(error(400, "invalid", "Invalid input.", "at least one profile is required", PROFILES))
    if len(profiles) > MAX_PROFILES_PER_JOB:
        problems.append(error(400, "invalid", "Too many profiles.",
                              f"at most {MAX_PROFILES_PER_JOB} profiles per job, got {len(profiles)}", PROFILES))
        return problems
    problems += _check_lists(data.get("relationships"))
    for index, profile in enumerate(profiles):
        problems += _check_profile(index, profile, request_rejects)
    return problems


def _check_lists(relationships: Any) -> list[dict[str, Any]]:
    if relationships is None:
        return []
    items = ((relationships or {}).get("lists") or {}).get("data")
    if not isinstance(items, list):
        return [error(400, "invalid", "Invalid input.", "relationships.lists.data must be an array",
                      "/data/relationships/lists/data")]
    return [
        error(400, "invalid", "Invalid input.", "each list needs type 'list' and a string id",
              f"/data/relationships/lists/data/{i}")
        for i, item in enumerate(items)
        if not isinstance(item, dict) or item.get("type") != "list" or not isinstance(item.get("id"), str)
    ]


def _check_profile(index: int, profile: Any, request_rejects: frozenset[str]) -> list[dict[str, Any]]:
    at = f"{PROFILES}/{index}"
    if not isinstance(profile, dict) or profile.get("type") != "profile" or not isinstance(profile.get("attributes"), dict):
        return [error(400, "invalid", "Invalid input.", "a profile needs type 'profile' and attributes", at)]
    attributes = profile["attributes"]
    if _size_bound(attributes) > MAX_PROFILE_BYTES and len(orjson.dumps(profile)) > MAX_PROFILE_BYTES:
        return [error(400, "invalid", "Profile too large.", f"a profile may be at most {MAX_PROFILE_BYTES} bytes", at)]
    problems = []
    for key, value in attributes.items():
        pointer = f"{at}/attributes/{key}"
        if key in STRING_ATTRIBUTES:
            if value is not None and not isinstance(value, str):
                problems.append(error(400, "invalid", "Invalid input.", f"{key} must be a string", pointer))
        elif key == "location":
            problems += _check_location(value, pointer)
        elif key == "properties":
            if value is not None and not isinstance(value, dict):
                problems.append(error(400, "invalid", "Invalid input.", "properties must be an object", pointer))
        else:
            problems.append(error(400, "invalid", "Invalid input.", f"'{key}' is not a profile attribute", pointer))
    if problems:
        return problems
    email, phone = attributes.get("email"), attributes.get("phone_number")
    if not (email or phone or attributes.get("external_id")):
        return [error(400, "invalid", "Invalid input.", "a profile needs an email, phone_number or external_id", at)]
    if email is not None and (not _EMAIL.fullmatch(email) or email in request_rejects):
        problems.append(error(400, "invalid", "Invalid email address.", "email is not a valid address",
                              f"{at}/attributes/email"))
    if phone is not None and not _E164.fullmatch(phone):
        problems.append(error(400, "invalid", "Invalid phone number.", "phone_number must be E.164",
                              f"{at}/attributes/phone_number"))
    return problems


def _size_bound(attributes: dict[str, Any]) -> int:
    """An upper bound of the profile's JSON size, cheap for the common flat profile, so the
    exact (re-serializing) check runs only for the rare one that might be too large."""
    bound = 64  # the envelope: {"type":"profile","attributes":{...}}
    for key, value in attributes.items():
        bound += 6 * len(key) + 4
        bound += 6 * len(value) + 2 if isinstance(value, str) else len(orjson.dumps(value))
        if bound > MAX_PROFILE_BYTES:
            break
    return bound


def _check_location(value: Any, pointer: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [error(400, "invalid", "Invalid input.", "location must be an object", pointer)]
    problems = []
    for key, item in value.items():
        ok = (key in LOCATION_STRINGS and (item is None or isinstance(item, str))) or (
            key in LOCATION_COORDINATES and (item is None or isinstance(item, (str, int, float)))
        )
        if not ok:
            problems.append(error(400, "invalid", "Invalid input.", f"location.{key} is not valid", f"{pointer}/{key}"))
    return problems
