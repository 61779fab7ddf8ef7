"""Which Klaviyo account a key belongs to: the scope of Klaviyo's rate limits, which every
private key of one account shares. Asked of Klaviyo (``GET /api/accounts``), never guessed
from the key's text; a key without the ``accounts:read`` scope cannot say, and then the
limits are shared by the runs of one connection only (and the run says so)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import ACCOUNT_ID
from exporter.errors import KlaviyoAuthError, KlaviyoRequestError
from exporter.klaviyo.auth import ApiKeySource
from exporter.klaviyo.retry import RetryPolicy

ACCOUNT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.3, max_delay=2.0, budget_seconds=10.0)


@dataclass(frozen=True)
class LimitScope:
    name: str  # what the shared schedules are named by
    note: str | None = None  # why it is narrower than the account, for the report's hints


async def limit_scope(base_url: str, key: ApiKeySource, connection: str, known_account: str | None) -> LimitScope:
    if known_account:
        return LimitScope(f"account-{known_account}")
    from exporter.klaviyo.client import KlaviyoClient

    fallback = LimitScope(f"connection-{connection}", f"the key of connection {connection!r} lacks the accounts:read "
                          "scope, so Klaviyo's rate limits are shared only among this connection's runs, not with "
                          "other connections to the same account; give the key accounts:read")
    async with KlaviyoClient(key, base_url, rate_limits=None, retry=ACCOUNT_RETRY) as client:
        try:
            body = await client.request("GET", "/api/accounts", tier=None)
        except KlaviyoAuthError as exc:
            if exc.status == 403:
                return fallback
            raise
        except KlaviyoRequestError:  # Klaviyo did not answer: the run's own first call will say so
            return LimitScope(fallback.name)
    try:
        account = body["data"][0]["id"]
    except (KeyError, IndexError, TypeError):
        return fallback
    return LimitScope(f"account-{account}") if isinstance(account, str) and ACCOUNT_ID.fullmatch(account) else fallback
