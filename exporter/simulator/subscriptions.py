"""Checks a ``POST /api/profile-subscription-bulk-create-jobs`` body as Klaviyo does: the
JSON:API envelope, at most ``MAX_SUBSCRIPTION_PROFILES`` profiles, each subscribing on the
email channel (with an email) or the SMS channel (with an E.164 phone) to ``SUBSCRIBED``, a
``consented_at`` in the past for each when ``historical_import`` is true, and the list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.klaviyo.limits import MAX_SUBSCRIPTION_PROFILES
from exporter.simulator.validation import _E164, error
from exporter.timestamps import parse_iso

JOB_TYPE = "profile-subscription-bulk-create-job"
_PROFILES = "/data/attributes/profiles/data"


@dataclass
class SubscriptionJob:
    profiles: list[dict[str, Any]]  # each profile's attributes
    list_id: str | None
    historical: bool
    source: str | None


def check_subscription_job(body: Any) -> SubscriptionJob | list[dict[str, Any]]:
    """The job, or every problem with it (each with its pointer)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != JOB_TYPE or not isinstance(data.get("attributes"), dict):
        return [error(400, "invalid", "Invalid input.", f"data must be a {JOB_TYPE} resource", "/data")]
    attributes = data["attributes"]
    unknown = set(attributes) - {"profiles", "historical_import", "custom_source"}
    if unknown:
        return [error(400, "invalid", "Invalid input.", f"unknown attribute {sorted(unknown)[0]!r}",
                      f"/data/attributes/{sorted(unknown)[0]}")]
    historical = attributes.get("historical_import", False)
    source = attributes.get("custom_source")
    if not isinstance(historical, bool) or (source is not None and not isinstance(source, str)):
        return [error(400, "invalid", "Invalid input.", "historical_import is a boolean, custom_source a string",
                      "/data/attributes")]
    items = (attributes.get("profiles") or {}).get("data") if isinstance(attributes.get("profiles"), dict) else None
    if not isinstance(items, list) or not 0 < len(items) <= MAX_SUBSCRIPTION_PROFILES:
        return [error(400, "invalid", "Invalid input.",
                      f"profiles.data must hold 1 to {MAX_SUBSCRIPTION_PROFILES} profiles", _PROFILES)]
    problems: list[dict[str, Any]] = []
    profiles = []
    for i, item in enumerate(items):
        found = _check_profile(item, historical, f"{_PROFILES}/{i}")
        if isinstance(found, dict) and "status" in found:
            problems.append(found)
        else:
            profiles.append(found)
    list_id = _list_id(data.get("relationships"))
    if list_id is None:
        problems.append(error(400, "invalid", "Invalid input.", "relationships.list.data must be {type: list, id}",
                              "/data/relationships/list"))
    if problems:
        return problems
    return SubscriptionJob(profiles, list_id or None, historical, source)  # '' (no list): None


def _check_profile(item: Any, historical: bool, pointer: str) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("type") != "profile" or not isinstance(item.get("attributes"), dict):
        return error(400, "invalid", "Invalid input.", "each item is a profile resource with attributes", pointer)
    attributes = item["attributes"]
    subscriptions = attributes.get("subscriptions")
    if not isinstance(subscriptions, dict) or not subscriptions:
        return error(400, "invalid", "Invalid input.", "subscriptions is required", f"{pointer}/attributes/subscriptions")
    for channel, parameters in subscriptions.items():
        where = f"{pointer}/attributes/subscriptions/{channel}"
        if channel not in ("email", "sms"):
            return error(400, "invalid", "Invalid input.", f"this simulator subscribes email and sms, not {channel}",
                         where)
        marketing = parameters.get("marketing") if isinstance(parameters, dict) else None
        if not isinstance(marketing, dict) or marketing.get("consent") != "SUBSCRIBED":
            return error(400, "invalid", "Invalid input.", "marketing.consent must be SUBSCRIBED", f"{where}/marketing")
        stamp = marketing.get("consented_at")
        if historical or stamp is not None:
            at = parse_iso(stamp)
            if at is None:
                return error(400, "invalid", "Invalid input.",
                             "consented_at is required for a historical import, in ISO 8601", f"{where}/marketing")
            if at > datetime.now(UTC):
                return error(400, "invalid", "Invalid input.", "consented_at must be in the past", f"{where}/marketing")
        if channel == "email" and not isinstance(attributes.get("email"), str):
            return error(400, "invalid", "Invalid input.", "an email subscription needs the email",
                         f"{pointer}/attributes/email")
        if channel == "sms" and not (isinstance(attributes.get("phone_number"), str)
                                     and _E164.fullmatch(attributes["phone_number"])):
            return error(400, "invalid", "Invalid input.", "an SMS subscription needs an E.164 phone_number",
                         f"{pointer}/attributes/phone_number")
    return dict(attributes)


def _list_id(relationships: Any) -> str | None:
    """The list id, '' for none, or None when the relationship is malformed."""
    if relationships is None:
        return ""
    listed = relationships.get("list") if isinstance(relationships, dict) else None
    data = listed.get("data") if isinstance(listed, dict) else None
    if not isinstance(data, dict) or data.get("type") != "list" or not isinstance(data.get("id"), str):
        return None
    return str(data["id"])
