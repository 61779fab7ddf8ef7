"""Byte streams from where segments live: a local path, or an Azure blob (async SDK).

Blobs are read with the async ``azure-storage-blob`` client in bounded chunks, so a
segment of any size costs two downloads' worth of memory (one is read ahead). Credentials
are injected (a connection string for Azurite and local runs, otherwise
``DefaultAzureCredential``), never read here from logs or the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, TypeVar, cast
from urllib.parse import urlsplit

from exporter.connection_string import account_key
from exporter.errors import SourceError

if TYPE_CHECKING:  # the storage SDK is imported when a blob is read, not to read a local file
    from azure.storage.blob.aio import BlobClient

T = TypeVar("T")
CHUNK_BYTES = 256 * 1024  # a source's pieces, so a block's memory stays bounded
# One GET of a blob (the first one too, not the SDK's 32 MB): a GET per 256 KB piece was the
# blob source's ceiling (a 75 MB segment took 300 requests in a row).
DOWNLOAD_BYTES = 2 * 1024 * 1024
_DOWNLOADS: dict[str, Any] = {"max_single_get_size": DOWNLOAD_BYTES, "max_chunk_get_size": DOWNLOAD_BYTES}  # BlobClient options


@dataclass(frozen=True)
class BlobLocation:
    """A blob by account, container and name, never by a URL joined from strings: the SDK
    quotes the name, so ``#``, ``?``, ``%25``, spaces and non-ASCII letters reach exactly
    that blob. ``etag`` pins one version: every read is conditional on it."""

    account_url: str
    container: str
    name: str
    credential: Any = None
    etag: str | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False)  # SDK client options

    @property
    def description(self) -> str:
        return f"{self.account_url.rstrip('/')}/{self.container}/{self.name}"

    def client(self) -> BlobClient:
        from azure.storage.blob.aio import BlobClient

        credential = self.credential if self.credential is not None else credential_from_environment()
        return BlobClient(self.account_url, self.container, self.name, credential=credential,
                          **(_DOWNLOADS | self.options))


def is_blob_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


async def local_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES,
                       on_size: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """The file's bytes; ``on_size`` is told its size once it is open."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if on_size is not None:
            on_size(os.fstat(handle.fileno()).st_size)
        while chunk := handle.read(chunk_bytes):
            yield chunk


def blob_client(url: str, credential: Any = None) -> BlobClient:
    """A client for one blob URL; the credential defaults to the storage connection string's key
    (``AZURE_STORAGE_CONNECTION_STRING``) or, failing that, ``DefaultAzureCredential``."""
    from azure.storage.blob.aio import BlobClient

    if credential is None:
        credential = credential_from_environment()
    return BlobClient.from_blob_url(url, credential=credential, **_DOWNLOADS)


async def blob_chunks(source: str | BlobLocation, credential: Any = None,
                      on_size: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """The blob's bytes (its pinned version, if any), in pieces of ``CHUNK_BYTES``; ``on_size``
    is told its size once the download has started. The next GET runs while the caller works
    on the pieces of this one."""
    from azure.core import MatchConditions
    from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

    if isinstance(source, BlobLocation):
        client, name, etag = source.client(), source.description, source.etag
    else:
        client, name, etag = blob_client(source, credential), redact_url(source), None
    conditions: dict[str, Any] = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
    async with client:
        try:
            downloader = await client.download_blob(**conditions)  # its later GETs ask for the first one's version
            if on_size is not None and downloader.size is not None:
                on_size(downloader.size)
            async for download in read_ahead(downloader.chunks()):
                for start in range(0, len(download), CHUNK_BYTES):
                    yield download[start:start + CHUNK_BYTES]
        except ResourceNotFoundError:
            raise SourceError(f"blob not found: {name}") from None
        except ResourceModifiedError:
            raise SourceError(f"the segment file {name} was replaced or changed after the run started; "
                              "the run stops rather than mix two versions (start a new run)") from None
        except AzureError as exc:
            raise SourceError(f"cannot read blob {name}: {exc.__class__.__name__}") from None


async def read_ahead(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """``items``, with the next one fetched while the caller works on this one."""
    ahead: asyncio.Queue[tuple[T | None, BaseException | None, bool]] = asyncio.Queue(1)

    async def fetch() -> None:
        try:
            async for item in items:
                await ahead.put((item, None, False))
        except Exception as exc:  # handed to the caller, in order, as if it had fetched itself
            await ahead.put((None, exc, True))
        else:
            await ahead.put((None, None, True))

    fetching = asyncio.create_task(fetch())
    try:
        while True:
            item, error, done = await ahead.get()
            if error is not None:
                raise error
            if done:
                return
            yield cast(T, item)
    finally:
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetching


def blob_folder_address(url: str) -> tuple[str, str, str]:
    """(account URL, container, prefix ending in ``/``) of a folder's URL; the SDK's parser
    knows account-style (``acct.blob.core.windows.net``) and path-style (Azurite) URLs."""
    from azure.storage.blob.aio import BlobClient

    path = urlsplit(url).path
    folder_url = url.split("?", 1)[0]
    if not path.endswith("/"):
        folder_url = folder_url.rpartition("/")[0] + "/"
    client = BlobClient.from_blob_url(folder_url + "_")  # a name inside the folder; the client is never used
    prefix = client.blob_name[:-1]
    if not client.container_name or not prefix.strip("/"):
        raise SourceError(f"{redact_url(url)} names no folder inside a container")
    return f"{client.scheme}://{client.primary_hostname}", client.container_name, prefix


async def pinned_blob(url: str, credential: Any = None) -> BlobLocation:
    """A blob URL as a location pinned to the blob's current version (ETag): the run reads that
    version only, and a resumed run can tell whether the file is still the same."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    client = blob_client(url, credential)
    async with client:
        try:
            properties = await client.get_blob_properties()
        except ResourceNotFoundError:
            raise SourceError(f"blob not found: {redact_url(url)}") from None
        except AzureError as exc:
            raise SourceError(f"cannot read blob {redact_url(url)}: {exc.__class__.__name__}") from None
    sas = urlsplit(url).query or None
    return BlobLocation(f"{client.scheme}://{client.primary_hostname}", client.container_name, client.blob_name,
                        credential if credential is not None else sas, properties.etag)


def redact_url(url: str) -> str:
    """The URL without its query string, which may carry a SAS token."""
    return url.split("?", 1)[0]


def credential_from_environment() -> Any:
    key = account_key(os.environ.get("AZURE_STORAGE_CONNECTION_STRING", ""))
    if key is not None:
        return key
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()
