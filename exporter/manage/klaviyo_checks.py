"""Read-only Klaviyo calls that check what a person saves before it is saved: a key
Klaviyo refuses, or a list it does not have, is a ``400`` at the desk, not a failed run."""

from __future__ import annotations

from exporter.errors import KlaviyoAuthError, KlaviyoRequestError
from exporter.klaviyo.auth import ApiKeySource, StaticApiKey
from exporter.klaviyo.retry import RetryPolicy

CHECK_RETRY = RetryPolicy(max_attempts=3, base_delay=0.3, max_delay=2.0, budget_seconds=15.0)


class KeyRefused(Exception):
    """Klaviyo answered 401 to the key."""


async def account_of(base_url: str, key: str) -> str | None:
    """The Klaviyo account the key belongs to (``GET /api/accounts``), or None when the key
    is valid but lacks the ``accounts:read`` scope (Klaviyo answers 403, not 401)."""
    from exporter.klaviyo.client import KlaviyoClient

    async with KlaviyoClient(StaticApiKey(key), base_url, rate_limits=None, retry=CHECK_RETRY) as client:
        try:
            body = await client.request("GET", "/api/accounts", tier=None)
        except KlaviyoAuthError as exc:
            if exc.status == 403:
                return None
            raise KeyRefused() from None
    try:
        account = body["data"][0]["id"]
    except (KeyError, IndexError, TypeError):
        raise KlaviyoRequestError("Klaviyo answered GET /api/accounts without an account id") from None
    if not isinstance(account, str) or not account.isalnum() or len(account) > 64:
        raise KlaviyoRequestError("Klaviyo answered GET /api/accounts with an account id of an unexpected shape")
    return account


async def list_name(base_url: str, key: ApiKeySource, list_id: str) -> str:
    """The list's name; ``NotFound`` if the key's account has no such list."""
    from exporter.klaviyo.client import KlaviyoClient

    async with KlaviyoClient(key, base_url, rate_limits=None, retry=CHECK_RETRY) as client:
        return await client.check_list(list_id)
