"""Consent in Klaviyo: what a profile's consent is now, and subscription jobs.

Klaviyo's subscribe call *lifts* unsubscribe, spam-complaint and manual suppressions, so
nobody is subscribed before their current consent is read: a profile whose opt-out (or
such a suppression) is newer than the row's ``consented_at`` is a conflict, and stays opted
out. One already subscribed on a channel is left as it is. Subscription jobs carry
``historical_import`` (the consent was gathered before, at ``consented_at``: no double
opt-in mail) and the export's name as ``custom_source``, and add the profiles to the list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence
from urllib.parse import quote

import orjson

from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.limits import PAGE_SIZE_MAX
from exporter.klaviyo.lists import bounded_pages
from exporter.mapping.consent import Consent
from exporter.timestamps import parse_iso

OPT_OUTS = ("UNSUBSCRIBE", "SPAM_COMPLAINT", "USER_SUPPRESSED")  # what a subscribe call would lift
JOB_TYPE = "profile-subscription-bulk-create-job"


async def current_consent(klaviyo: KlaviyoClient, emails: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Lower-cased email -> the profile's ``subscriptions``, for those of ``emails`` (one
    filter batch) that Klaviyo knows. ``LookupIncomplete`` when the answer cannot be read whole."""
    wanted = {email.lower() for email in emails}
    condition = "any(email,[" + ",".join(orjson.dumps(email).decode() for email in sorted(wanted)) + "])"
    path = (f"/api/profiles?filter={quote(condition, safe='')}&additional-fields[profile]=subscriptions"
                        f"&page[size]={PAGE_SIZE_MAX}")
    found: dict[str, dict[str, Any]] = {}
    async for items in bounded_pages(klaviyo, path, "a consent lookup"):
        for item in items:
            attributes = item.get("attributes")
            if not isinstance(attributes, dict):
                continue
            email, subscriptions = attributes.get("email"), attributes.get("subscriptions")
            if isinstance(email, str) and email.lower() in wanted:
                found[email.lower()] = subscriptions if isinstance(subscriptions, dict) else {}
    return found


def standing(consent: Consent, subscriptions: dict[str, Any] | None) -> dict[str, str]:
    """Per channel the row consents to: "subscribe", "already" (subscribed now), or why not
    (an opt-out or suppression newer than the row's consent; one without a time counts as newer)."""
    verdicts = {}
    for channel, at in consent.at.items():
        consented = parse_iso(at)
        marketing = ((subscriptions or {}).get(channel) or {}).get("marketing") or {}
        state = marketing.get("consent")
        newer = []
        if state == "UNSUBSCRIBED" and _after(marketing.get("consent_timestamp"), consented):
            newer.append(f"{channel} opt-out (UNSUBSCRIBED)")
        for suppression in marketing.get("suppression") or []:
            if isinstance(suppression, dict) and suppression.get("reason") in OPT_OUTS \
                    and _after(suppression.get("timestamp"), consented):
                newer.append(f"{channel} suppression ({suppression['reason']})")
        if newer:
            verdicts[channel] = (f"not subscribed to {channel}: Klaviyo holds a {newer[0]} newer than the row's "
                                 "consented_at, which stays")
        elif state == "SUBSCRIBED":
            verdicts[channel] = "already"
        else:
            verdicts[channel] = "subscribe"
    return verdicts


def subscription_job(list_id: str, source: str, profiles: list[tuple[Consent, list[str]]]) -> bytes:
    """A subscription job body: each consent with the channels to subscribe it on."""
    data = []
    for consent, channels in profiles:
        attributes: dict[str, Any] = {"email": consent.email}
        if "sms" in channels and consent.phone:
            attributes["phone_number"] = consent.phone
        attributes["subscriptions"] = {channel: {"marketing": {"consent": "SUBSCRIBED",
                                                               "consented_at": consent.at[channel]}}
                                       for channel in channels}
        data.append({"type": "profile", "attributes": attributes})
    return orjson.dumps({"data": {
        "type": JOB_TYPE,
        "attributes": {"custom_source": source, "historical_import": True, "profiles": {"data": data}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
    }})


async def subscribe(klaviyo: KlaviyoClient, body: bytes) -> None:
    await klaviyo.request("POST", "/api/profile-subscription-bulk-create-jobs", payload=body, tier="subscriptions")


def _after(value: Any, consented: datetime | None) -> bool:
    """Is this opt-out newer than the consent? Unknown times count as newer: never lift one."""
    stamp = parse_iso(value)
    return stamp is None or consented is None or stamp > consented
