"""List membership beyond imports: find profiles by email, take profiles off a list.

What mirror mode needs to remove leavers: Klaviyo removes list members by profile id only,
so leavers' emails are first looked up through the profile filter (``any(email,[...])``,
at most ``MAX_FILTER_VALUES`` a request, following every page), then removed in requests
of at most ``MAX_MEMBERSHIP_IDS`` ids. Each call counts against its own rate-limit tier.
Removal never deletes, suppresses or unsubscribes a profile.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence, TypeVar
from urllib.parse import quote

import orjson

from exporter.errors import KlaviyoRequestError
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.limits import MAX_FILTER_VALUES, MAX_MEMBERSHIP_IDS, PAGE_SIZE_MAX

T = TypeVar("T")


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def profile_ids_by_email(klaviyo: KlaviyoClient, emails: Iterable[str]) -> dict[str, str]:
    """Lower-cased email -> profile id, for the emails Klaviyo knows (the others are absent)."""
    wanted = list(dict.fromkeys(email.lower() for email in emails))
    found: dict[str, str] = {}
    for batch in _batches(wanted, MAX_FILTER_VALUES):
        condition = "any(email,[" + ",".join(orjson.dumps(email).decode() for email in batch) + "])"
        path: str | None = f"/api/profiles?filter={quote(condition, safe='')}&page[size]={PAGE_SIZE_MAX}"
        while path:
            body = await klaviyo.request("GET", path, tier="profiles")
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise KlaviyoRequestError("Klaviyo answered GET /api/profiles with a body of an unexpected shape")
            for item in body["data"]:
                if not isinstance(item, dict):
                    continue
                email = ((item.get("attributes") or {}).get("email") or "").lower()
                if email in batch and isinstance(item.get("id"), str):
                    found[email] = item["id"]
            link = (body.get("links") or {}).get("next")
            path = link if isinstance(link, str) else None
    return found


async def remove_from_list(klaviyo: KlaviyoClient, list_id: str, profile_ids: Sequence[str]) -> int:
    """Take these profiles off the list; returns how many ids were sent (Klaviyo answers 204)."""
    sent = 0
    for batch in _batches(list(dict.fromkeys(profile_ids)), MAX_MEMBERSHIP_IDS):
        payload = orjson.dumps({"data": [{"type": "profile", "id": profile_id} for profile_id in batch]})
        await klaviyo.request("DELETE", f"/api/lists/{quote(list_id, safe='')}/relationships/profiles",
                              payload=payload, tier="membership")
        sent += len(batch)
    return sent
