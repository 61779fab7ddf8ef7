"""Clients for the app's own storage account, from the same settings the Functions host uses.

Locally ``AzureWebJobsStorage`` is a connection string (Azurite); in Azure it is
identity-based (``AzureWebJobsStorage__accountName`` or ``__blobServiceUri`` /
``__queueServiceUri`` with the user-assigned identity in ``AZURE_CLIENT_ID``), so no key
is ever in the app's settings. One set of clients per process, shared by every call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from exporter.connection_string import account_key, connection_parts
from exporter.errors import ConfigError
from exporter.sources.files import BlobLocation

CONNECTION = "AzureWebJobsStorage"


@dataclass
class StorageClients:
    blobs: BlobServiceClient
    queue_url: str
    credential: Any  # also used to read segment blobs by URL
    owned_credential: Any = None
    options: dict[str, Any] = field(default_factory=dict)  # SDK client options (tests: a CA bundle)

    def queue(self, name: str) -> QueueClient:
        """Base64 messages, as the Functions queue trigger expects by default."""
        return QueueClient(self.queue_url, name, credential=self.credential,
                           message_encode_policy=TextBase64EncodePolicy(),
                           message_decode_policy=TextBase64DecodePolicy(), **self.options)

    def segment(self, container: str, name: str, etag: str | None = None) -> BlobLocation:
        """A segment blob addressed through the SDK (never a joined URL), pinned to ``etag``."""
        return BlobLocation(self.blobs.url, container, name, self.credential, etag, self.options)

    async def close(self) -> None:
        await self.blobs.close()
        if self.owned_credential is not None:
            await self.owned_credential.close()


def storage_from_environment(environ: dict[str, str] | None = None, credential: Any = None,
                             **options: Any) -> StorageClients:
    """Clients from the app's storage settings. ``credential`` replaces ``DefaultAzureCredential``
    for identity-based settings (tests inject one); ``options`` go to every SDK client."""
    env = os.environ if environ is None else environ
    connection_string = env.get(CONNECTION, "")
    if connection_string:
        key = account_key(connection_string)
        if key is None:
            raise ConfigError(f"{CONNECTION} must be a connection string with AccountName and AccountKey")
        parts = connection_parts(connection_string)
        account = key["account_name"]
        scheme, suffix = parts.get("DefaultEndpointsProtocol", "https"), parts.get("EndpointSuffix", "core.windows.net")
        blob_uri = parts.get("BlobEndpoint") or f"{scheme}://{account}.blob.{suffix}"
        queue_uri = parts.get("QueueEndpoint") or f"{scheme}://{account}.queue.{suffix}"
        return StorageClients(BlobServiceClient(blob_uri, credential=key, **options), queue_uri, key, options=options)
    account = env.get(f"{CONNECTION}__accountName", "")
    blob_uri = env.get(f"{CONNECTION}__blobServiceUri") or (f"https://{account}.blob.core.windows.net" if account else "")
    queue_uri = env.get(f"{CONNECTION}__queueServiceUri") or (f"https://{account}.queue.core.windows.net" if account else "")
    if not (blob_uri and queue_uri):
        raise ConfigError(f"storage is not configured: set {CONNECTION} (connection string) or {CONNECTION}__accountName")
    owned = None
    if credential is None:
        from azure.identity.aio import DefaultAzureCredential

        credential = owned = DefaultAzureCredential(managed_identity_client_id=env.get("AZURE_CLIENT_ID") or None)
    return StorageClients(BlobServiceClient(blob_uri, credential=credential, **options), queue_uri, credential,
                          owned_credential=owned, options=options)
