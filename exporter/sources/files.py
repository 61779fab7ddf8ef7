"""Byte streams from where segments live: a local path, or an Azure blob (async SDK).

Blobs are read with the async ``azure-storage-blob`` client in bounded chunks, so a
segment of any size costs one chunk of memory. Credentials are injected (a connection
string for Azurite and local runs, otherwise ``DefaultAzureCredential``), never read here
from logs or the URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, AsyncIterator

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob.aio import BlobClient

from exporter.azure_storage import account_key
from exporter.errors import SourceError

CHUNK_BYTES = 256 * 1024  # bounds memory per block; the first GET is capped too, not 32 MB


def is_blob_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


async def local_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        while chunk := handle.read(chunk_bytes):
            yield chunk


def blob_client(url: str, credential: Any = None) -> BlobClient:
    """A client for one blob URL; the credential defaults to the storage connection string's key
    (``AZURE_STORAGE_CONNECTION_STRING``) or, failing that, ``DefaultAzureCredential``."""
    if credential is None:
        credential = _credential_from_environment()
    return BlobClient.from_blob_url(url, credential=credential, max_single_get_size=CHUNK_BYTES, max_chunk_get_size=CHUNK_BYTES)


async def blob_chunks(url: str, credential: Any = None) -> AsyncIterator[bytes]:
    async with blob_client(url, credential) as client:
        try:
            downloader = await client.download_blob()
            async for chunk in downloader.chunks():
                yield chunk
        except ResourceNotFoundError:
            raise SourceError(f"blob not found: {redact_url(url)}") from None
        except AzureError as exc:
            raise SourceError(f"cannot read blob {redact_url(url)}: {exc.__class__.__name__}") from None


def redact_url(url: str) -> str:
    """The URL without its query string, which may carry a SAS token."""
    return url.split("?", 1)[0]


def _credential_from_environment() -> Any:
    key = account_key(os.environ.get("AZURE_STORAGE_CONNECTION_STRING", ""))
    if key is not None:
        return key
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()
