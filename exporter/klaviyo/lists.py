"""List membership beyond imports: find a list's members by email, take profiles off a list.

What mirror mode needs to remove leavers: Klaviyo removes list members by profile id only,
so leavers are first looked up among the list's own members
(``GET /api/lists/{id}/profiles?filter=any(email,[...])``, or by ``phone_number``), then removed in requests of at
most ``MAX_MEMBERSHIP_IDS`` ids. Looking among the members, not among all profiles, makes
"not found" mean "not on the list" — but only when every page of the answer was read: a
lookup whose pages loop, run past ``MAX_LOOKUP_PAGES`` or come back malformed raises
``LookupIncomplete``, and nobody it was about counts as off the list. Each call counts
against its own rate-limit tier. Removal never deletes, suppresses or unsubscribes anyone.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, Sequence
from urllib.parse import quote, urlsplit

import orjson

from exporter.errors import KlaviyoRequestError
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.limits import MAX_FILTER_URL_CHARS, MAX_FILTER_VALUES, MAX_MEMBERSHIP_IDS, PAGE_SIZE_MAX

# One page holds every member a batch of MAX_FILTER_VALUES emails can match (an email is one
# profile); a few more allow for Klaviyo paging early. More than this is an answer gone wrong.
MAX_LOOKUP_PAGES = 5


class LookupIncomplete(KlaviyoRequestError):
    """A lookup whose answer could not be read to its end: absence from it proves nothing."""


def filter_batches(emails: Sequence[str]) -> Iterator[list[str]]:
    """Emails in batches for one ``any(email,[...])`` filter each: at most
    ``MAX_FILTER_VALUES``, and at most ``MAX_FILTER_URL_CHARS`` once URL-encoded."""
    batch: list[str] = []
    length = 0
    for email in emails:
        size = len(quote(orjson.dumps(email).decode(), safe="")) + 3  # and its encoded comma
        if batch and (len(batch) == MAX_FILTER_VALUES or length + size > MAX_FILTER_URL_CHARS):
            yield batch
            batch, length = [], 0
        batch.append(email)
        length += size
    if batch:
        yield batch


async def list_members_by(klaviyo: KlaviyoClient, list_id: str, field: str, values: Sequence[str]) -> dict[str, str]:
    """Value -> profile id, for those of ``values`` (one filter batch of ``field``: ``email``,
    lower-cased, or ``phone_number``) that are members of the list; a value absent from the
    answer is not a member. ``LookupIncomplete`` when the answer cannot be read whole."""
    return await _lookup(klaviyo, f"/api/lists/{quote(list_id, safe='')}/profiles", field, values, "a list lookup")


async def profiles_by(klaviyo: KlaviyoClient, field: str, values: Sequence[str]) -> dict[str, str]:
    """Value -> profile id among all the account's profiles (for ``external_id``, which a
    list's members cannot be filtered by)."""
    return await _lookup(klaviyo, "/api/profiles", field, values, "a profile lookup")


async def _lookup(klaviyo: KlaviyoClient, route: str, field: str, values: Sequence[str], what: str) -> dict[str, str]:
    wanted = {_normal(field, value) for value in values}
    condition = f"any({field},[" + ",".join(orjson.dumps(value).decode() for value in sorted(wanted)) + "])"
    path = f"{route}?filter={quote(condition, safe='')}&page[size]={PAGE_SIZE_MAX}"
    found: dict[str, str] = {}
    async for items in bounded_pages(klaviyo, path, what):
        for item in items:
            attributes = item.get("attributes")
            value = attributes.get(field) if isinstance(attributes, dict) else None
            if isinstance(value, str) and _normal(field, value) in wanted and isinstance(item.get("id"), str):
                found[_normal(field, value)] = item["id"]
    return found


def _normal(field: str, value: str) -> str:
    return value.lower() if field == "email" else value


async def bounded_pages(klaviyo: KlaviyoClient, path: str, what: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The items of each page of a profile-read answer, following ``links.next`` to its end;
    ``LookupIncomplete`` for a page of the wrong shape, a link back to a page already read, or
    more than ``MAX_LOOKUP_PAGES`` pages."""
    followed: set[str] = set()
    next_path: str | None = path
    while next_path:
        if page_key(next_path) in followed:
            raise LookupIncomplete(f"Klaviyo's answer to {what} links back to a page already read")
        if len(followed) == MAX_LOOKUP_PAGES:
            raise LookupIncomplete(f"Klaviyo's answer to {what} runs past {MAX_LOOKUP_PAGES} pages")
        followed.add(page_key(next_path))
        body = await klaviyo.request("GET", next_path, tier="profiles")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise LookupIncomplete(f"Klaviyo answered {what} with a body of an unexpected shape")
        yield [item for item in body["data"] if isinstance(item, dict)]
        link = (body.get("links") or {}).get("next")
        next_path = link if isinstance(link, str) and link else None


def page_key(path: str) -> str:
    """A page's path and query, whether Klaviyo linked to it absolutely or not."""
    parts = urlsplit(path)
    return f"{parts.path}?{parts.query}"


async def remove_from_list(klaviyo: KlaviyoClient, list_id: str, profile_ids: Sequence[str]) -> int:
    """Take these profiles off the list; returns how many ids were sent (Klaviyo answers 204)."""
    sent = 0
    unique = list(dict.fromkeys(profile_ids))
    for start in range(0, len(unique), MAX_MEMBERSHIP_IDS):
        batch = unique[start:start + MAX_MEMBERSHIP_IDS]
        payload = orjson.dumps({"data": [{"type": "profile", "id": profile_id} for profile_id in batch]})
        await klaviyo.request("DELETE", f"/api/lists/{quote(list_id, safe='')}/relationships/profiles",
                              payload=payload, tier="membership")
        sent += len(batch)
    return sent
