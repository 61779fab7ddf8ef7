"""The simulator's own strict checks of a bulk import request, as Klaviyo applies them.

Problems come back as JSON:API error objects with a ``source.pointer`` into the body, the
way Klaviyo's all-or-nothing validation answers. Stricter than Klaviyo in one place, on
purpose: an attribute name Klaviyo does not define is refused, to catch client typos.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from exporter.klaviyo.limits import KLAVIYO_PROFILE_BYTES, MAX_PROFILES_PER_JOB

STRING_ATTRIBUTES = frozenset(
    {"email", "phone_number", "external_id", "_kx", "first_name", "last_name", "organization", "locale", "title", "image"}
)
LOCATION_STRINGS = frozenset({"address1", "address2", "city", "country", "region", "zip", "timezone", "ip"})
LOCATION_COORDINATES = frozenset({"latitude", "longitude"})
OBJECTS = frozenset({"location", "properties"})
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
    """This runs for every profile a test or benchmark sends (a million per benchmark run),
    so a profile whose attributes are all plain strings of known names takes one quick
    pass; only another one is walked attribute by attribute, and pointers are built only
    for a profile that has a problem. Its size is bounded from its strings' lengths (at
    most 6 bytes a character, escaped, and 32 a name for quotes, colons, commas and
    braces, all rounded up to 8 bytes a character or item); only a profile that may be
    too large is serialized."""
    attributes = profile.get("attributes") if type(profile) is dict and profile.get("type") == "profile" else None
    if type(attributes) is not dict:
        return [error(400, "invalid", "Invalid input.", "a profile needs type 'profile' and attributes", _at(index))]
    if "meta" in profile and unset_properties(profile["meta"]) is None:
        return [error(400, "invalid", "Invalid input.", "meta may hold patch_properties.unset: a property name or a "
                                                        "list of them", f"{_at(index)}/meta")]
    chars = 0
    plain = True
    for key, value in attributes.items():
        kind = type(value)
        if kind is str and key in STRING_ATTRIBUTES:
            chars += len(key) + len(value)
        elif kind is dict and key in OBJECTS and (key == "properties" or value.keys() <= LOCATION_STRINGS):
            chars += len(key) + len(value)
            for name, item in value.items():
                if type(item) is not str:
                    plain = False
                    break
                chars += len(name) + len(item)
            if not plain:
                break
        else:
            plain = False
            break
    problems = [] if plain else _check_attributes(index, attributes)
    if (not plain or 64 + 8 * (chars + 4 * len(attributes)) > KLAVIYO_PROFILE_BYTES) \
            and len(orjson.dumps(profile)) > KLAVIYO_PROFILE_BYTES:
        return [error(400, "invalid", "Profile too large.", f"a profile may be at most {KLAVIYO_PROFILE_BYTES} bytes",
                      _at(index))]
    if problems:
        return problems
    email, phone = attributes.get("email"), attributes.get("phone_number")
    if not (email or phone or attributes.get("external_id")):
        return [error(400, "invalid", "Invalid input.", "a profile needs an email, phone_number or external_id",
                      _at(index))]
    if email is not None and (not _EMAIL.fullmatch(email) or email in request_rejects):
        problems.append(error(400, "invalid", "Invalid email address.", "email is not a valid address",
                              f"{_at(index)}/attributes/email"))
    if phone is not None and not _E164.fullmatch(phone):
        problems.append(error(400, "invalid", "Invalid phone number.", "phone_number must be E.164",
                              f"{_at(index)}/attributes/phone_number"))
    return problems


def unset_properties(meta: Any) -> list[str] | None:
    """The property names a profile's ``meta.patch_properties.unset`` removes; None if the
    ``meta`` is not of that shape (the only patch the simulator applies)."""
    patch = meta.get("patch_properties") if isinstance(meta, dict) and set(meta) == {"patch_properties"} else None
    unset = patch.get("unset") if isinstance(patch, dict) and set(patch) == {"unset"} else None
    names = [unset] if isinstance(unset, str) else unset
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        return None
    return names


def _check_attributes(index: int, attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """Each attribute of a profile that is not all plain strings, with a pointer per problem."""
    problems = []
    for key, value in attributes.items():
        if key in STRING_ATTRIBUTES:
            if value is not None and type(value) is not str:
                problems.append(error(400, "invalid", "Invalid input.", f"{key} must be a string",
                                      f"{_at(index)}/attributes/{key}"))
        elif key == "location":
            problems += _check_location(value, f"{_at(index)}/attributes/{key}")
        elif key == "properties":
            if value is not None and type(value) is not dict:
                problems.append(error(400, "invalid", "Invalid input.", "properties must be an object",
                                      f"{_at(index)}/attributes/{key}"))
        else:
            problems.append(error(400, "invalid", "Invalid input.", f"'{key}' is not a profile attribute",
                                  f"{_at(index)}/attributes/{key}"))
    return problems


def _at(index: int) -> str:
    return f"{PROFILES}/{index}"


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
