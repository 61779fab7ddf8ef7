"""The Klaviyo API key from Azure Key Vault, cached, and fetched again after a 401.

The key is read with the async ``SecretClient`` and an injected credential (in Azure, the
app's managed identity through ``DefaultAzureCredential``). It is cached for a TTL so a
run does not ask Key Vault per request, and re-read once when Klaviyo refuses it, so a
rotated key is picked up without a restart.

Only two answers are final: the secret does not exist, or the identity is refused. Any
other failure (a timeout, a 5xx, a throttle) is retried with backoff, and while a cached
key exists a failed refresh keeps using it: the key Klaviyo still accepts stays valid
however long Key Vault is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient

from exporter.errors import ConfigError, ExportError, TransientError
from exporter.klaviyo.retry import RetryPolicy

KEY_VAULT_RETRY = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=4.0, budget_seconds=20.0)
RECHECK_SECONDS = 30.0  # with a cached key, how soon to try Key Vault again after a failed refresh

log = logging.getLogger("exporter.secrets")


class KeyVaultApiKey:
    """An ``ApiKeySource`` backed by one Key Vault secret."""

    def __init__(self, client: SecretClient, secret_name: str, ttl_seconds: float = 300.0,
                 retry: RetryPolicy = KEY_VAULT_RETRY, version: str | None = None):
        """``version``: the one the management API stored (None: the newest, for keys put in
        the vault by hand and rotated there)."""
        self._client = client
        self._name = secret_name
        self._version = version
        self._ttl = ttl_seconds
        self._retry = retry
        self._value: str | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._value is None or time.monotonic() - self._fetched_at > self._ttl:
            async with self._lock:
                if self._value is None or time.monotonic() - self._fetched_at > self._ttl:
                    await self._refresh_cache()
        assert self._value is not None
        return self._value

    async def _refresh_cache(self) -> None:
        try:
            await self._fetch()
        except TransientError:
            if self._value is None:
                raise
            log.warning("Key Vault did not answer for secret %r; the cached key stays in use for now", self._name)
            self._fetched_at = time.monotonic() - self._ttl + RECHECK_SECONDS

    async def refresh(self) -> bool:
        previous = self._value
        async with self._lock:
            if self._value != previous:  # another caller already refreshed it
                return True
            await self._fetch()
        return self._value != previous

    async def _fetch(self) -> None:
        deadline = time.monotonic() + self._retry.budget_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                secret = await self._client.get_secret(self._name, self._version)
                break
            except ResourceNotFoundError:
                raise ConfigError(f"Key Vault has no secret named {self._name!r}") from None
            except ClientAuthenticationError as exc:
                raise ExportError(f"Key Vault refused the app's identity for secret {self._name!r} "
                                  f"({exc.__class__.__name__}): check its 'Key Vault Secrets User' role") from None
            except HttpResponseError as exc:
                if exc.status_code in (401, 403):
                    raise ExportError(f"Key Vault denied reading secret {self._name!r} ({exc.status_code}): "
                                      "check the app identity's 'Key Vault Secrets User' role") from None
                failure = f"HTTP {exc.status_code}"
            except AzureError as exc:
                failure = exc.__class__.__name__
            wait = self._retry.delay(attempt)
            if attempt >= self._retry.max_attempts or time.monotonic() + wait > deadline:
                raise TransientError(f"Key Vault did not answer for secret {self._name!r} after {attempt} attempts "
                                     f"(last: {failure}); the run will be retried")
            await asyncio.sleep(wait)
        if not secret.value:
            raise ConfigError(f"Key Vault secret {self._name!r} is empty")
        self._value = secret.value.strip()
        self._fetched_at = time.monotonic()

    def __repr__(self) -> str:
        return f"KeyVaultApiKey(secret={self._name!r})"


def key_vault_client(vault_url: str, credential: Any = None, **client_options: Any) -> SecretClient:
    """``client_options`` go to ``SecretClient`` (tests pass a CA bundle and relax the
    challenge's resource check for a vault on 127.0.0.1)."""
    if credential is None:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return SecretClient(vault_url=vault_url, credential=credential, **client_options)

