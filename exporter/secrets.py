"""The Klaviyo API key from Azure Key Vault, cached, and fetched again after a 401.

The key is read with the async ``SecretClient`` and an injected credential (in Azure, the
app's managed identity through ``DefaultAzureCredential``). It is cached for a TTL so a
run does not ask Key Vault per request, and re-read once when Klaviyo refuses it, so a
rotated key is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient

from exporter.errors import ConfigError, ExportError
from exporter.klaviyo.auth import ApiKeySource, StaticApiKey

KEY_ENV = "KLAVIYO_API_KEY"


class KeyVaultApiKey:
    """An ``ApiKeySource`` backed by one Key Vault secret."""

    def __init__(self, client: SecretClient, secret_name: str, ttl_seconds: float = 300.0):
        self._client = client
        self._name = secret_name
        self._ttl = ttl_seconds
        self._value: str | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._value is None or time.monotonic() - self._fetched_at > self._ttl:
            async with self._lock:
                if self._value is None or time.monotonic() - self._fetched_at > self._ttl:
                    await self._fetch()
        assert self._value is not None
        return self._value

    async def refresh(self) -> bool:
        previous = self._value
        async with self._lock:
            if self._value != previous:  # another caller already refreshed it
                return True
            await self._fetch()
        return self._value != previous

    async def _fetch(self) -> None:
        try:
            secret = await self._client.get_secret(self._name)
        except ResourceNotFoundError:
            raise ConfigError(f"Key Vault has no secret named {self._name!r}") from None
        except AzureError as exc:
            raise ExportError(f"cannot read secret {self._name!r} from Key Vault: {exc.__class__.__name__}") from None
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


def api_key_from_environment(variable: str = KEY_ENV) -> ApiKeySource | None:
    value = os.environ.get(variable, "").strip()
    return StaticApiKey(value) if value else None
