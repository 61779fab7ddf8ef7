"""The exports document the app runs from, read and written with optimistic concurrency.

One document holds every connection and export (``exports.json``), in a blob
(``EXPORTS_CONFIG_URL``) or, locally, a file. People may still edit it by hand, so every
write is conditional on the version read: a blob's ETag, a file's content hash under a lock.
The API's own ``ETag`` is per item (one connection or export, hashed as stored), so two
people editing different exports never collide, while two editing the same one do: the
second gets ``412`` and the first's change stands.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobClient

from exporter.errors import ConfigError, TransientError

MAX_DOCUMENT_BYTES = 4_000_000


class DocumentChanged(Exception):
    """Someone wrote the document between our read and our write: read again."""


class DocumentReadOnly(ConfigError):
    """The app runs from a document nobody may write (the bundled file)."""


class ExportsDocument(Protocol):
    origin: str  # where it lives, safe to show (no SAS token)

    async def read(self) -> tuple[bytes | None, str | None]:
        """The raw document and a version token; (None, None) when it does not exist yet."""

    async def write(self, raw: bytes, version: str | None) -> None:
        """Replace it if still at ``version`` (None: only if it still does not exist)."""


def item_etag(item: dict[str, Any]) -> str:
    return '"' + hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32] + '"'


def render(document: dict[str, Any]) -> bytes:
    """As a person would want to read and edit it by hand."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


class BlobDocument:
    def __init__(self, url: str, credential: Any, options: dict[str, Any]):
        self._url, self._credential, self._options = url, credential, options
        self.origin = url.split("?")[0]

    async def read(self) -> tuple[bytes | None, str | None]:
        try:
            async with BlobClient.from_blob_url(self._url, credential=self._credential, **self._options) as blob:
                downloader = await blob.download_blob()
                if (downloader.size or 0) > MAX_DOCUMENT_BYTES:
                    raise ConfigError(f"the exports document {self.origin} is over {MAX_DOCUMENT_BYTES:,} bytes")
                return await downloader.readall(), downloader.properties.etag
        except ResourceNotFoundError:
            return None, None
        except AzureError as exc:
            raise TransientError(f"cannot read the exports document {self.origin}: {exc.__class__.__name__}") from None

    async def write(self, raw: bytes, version: str | None) -> None:
        condition = ({"etag": version, "match_condition": MatchConditions.IfNotModified} if version
                     else {"match_condition": MatchConditions.IfMissing})
        try:
            async with BlobClient.from_blob_url(self._url, credential=self._credential, **self._options) as blob:
                await blob.upload_blob(raw, overwrite=True, content_settings=_json_content(), **condition)
        except (ResourceExistsError, ResourceNotFoundError):
            raise DocumentChanged() from None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise DocumentChanged() from None
            raise TransientError(f"cannot write the exports document {self.origin}: HTTP {exc.status_code}") from None
        except AzureError as exc:
            raise TransientError(f"cannot write the exports document {self.origin}: {exc.__class__.__name__}") from None


class FileDocument:
    """A local file: the version is a hash of its bytes; writers take a lock beside it and
    replace the file atomically, so a reader never sees half a document."""

    def __init__(self, path: Path, writable: bool = True):
        self._path, self._writable = path, writable
        self.origin = str(path)

    async def read(self) -> tuple[bytes | None, str | None]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise ConfigError(f"cannot read the exports document {self._path}: {exc.strerror}") from None
        return raw, hashlib.sha256(raw).hexdigest()

    async def write(self, raw: bytes, version: str | None) -> None:
        if not self._writable:
            raise DocumentReadOnly("the app runs from the exports.json bundled with its code, which is read-only: "
                                   "set EXPORTS_CONFIG_URL to a blob (infra/ does) or, locally, EXPORTS_CONFIG_FILE")
        lock_path = self._path.with_name(self._path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current, current_version = await self.read()
            if current_version != version:
                raise DocumentChanged()
            temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
            try:
                temporary.write_bytes(raw)
                os.replace(temporary, self._path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()


def _json_content() -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json")
