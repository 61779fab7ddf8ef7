"""Where a connection's Klaviyo key goes once accepted: the app's Key Vault, or locally the
owner-only secret store. Keys are write-only: stored as a new version of a secret whose name
the app derives from the connection, never returned, logged or written to reports.

Each write is a new secret version, and the connection records which version it uses, so
a change that loses a race for the document (``412``) leaves the connection on the key it
had: nothing is lost.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from azure.core.exceptions import AzureError, HttpResponseError

from exporter.errors import ExportError, TransientError
from exporter.local_secrets import LocalSecretStore

CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")  # it names a Key Vault secret: letters, digits, '-'
API_KEY = re.compile(r"[\x21-\x7e]{8,256}")  # printable, no spaces: what a Klaviyo private key looks like


def secret_name(connection: str) -> str:
    return f"klaviyo-connection-{connection}"


class KeyWriter(Protocol):
    where: str  # "Key Vault" or the local store's path, for messages

    async def store(self, name: str, value: str) -> str:
        """Keep ``value`` as a new version of secret ``name``; returns that version."""


class VaultKeyWriter:
    """Writes with the app's identity, which may set secrets on its own vault and nothing
    more (a custom role: see infra/modules/roles.bicep)."""

    where = "Key Vault"

    def __init__(self, client: Any):
        self._client = client

    async def store(self, name: str, value: str) -> str:
        try:
            secret = await self._client.set_secret(name, value, content_type="Klaviyo private API key")
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise ExportError(f"Key Vault refused to store secret {name!r} ({exc.status_code}): the app's identity "
                                  "needs the custom secret-writer role on its vault (infra/modules/roles.bicep)") from None
            raise TransientError(f"Key Vault did not store secret {name!r} (HTTP {exc.status_code}); "
                                 "nothing was saved, try again") from None
        except AzureError as exc:
            raise TransientError(f"Key Vault did not store secret {name!r} ({exc.__class__.__name__}); "
                                 "nothing was saved, try again") from None
        return str(secret.properties.version)


class LocalKeyWriter:
    def __init__(self, store: LocalSecretStore):
        self._store = store
        self.where = str(store.path)

    async def store(self, name: str, value: str) -> str:
        return self._store.store(name, value)
