"""Segment folders: where a customer-data platform drops one run's part files after another.

A folder is a local directory or a blob prefix; either way it is listed once, and every
name it yields is relative to it and checked as a plain blob name, so nothing listed can
lead a run outside the folder. The run to export is the newest one:

- files directly in the folder are each a whole segment (a flat folder of refreshes): the
  newest file alone is the run;
- files in a subfolder are the parts of one run (``<Segment>/2026/11/25/1200/part_1.csv``):
  the run is every data file in the subfolder that holds the newest file.

"Newest" is the latest modification time (blob ``Last-Modified``, file mtime); blob times
have one-second resolution, so files written within the same second are ordered by name
(the greater is newer: dated and numbered names sort in time order). Manifests
(``*.json``) and marker files (``_SUCCESS``, dot-files) are not data.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from exporter.errors import SourceError
from exporter.sources.files import BlobLocation, credential_from_environment
from exporter.sources.reach import OutOfReach, checked_blob_name

if TYPE_CHECKING:
    from azure.storage.blob.aio import ContainerClient

MAX_ENTRIES = 200_000  # a folder listing is held in memory: bound it
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class Entry:
    """One file of a folder, by its name relative to the folder."""

    name: str
    modified: float  # POSIX seconds
    size: int
    etag: str | None = None  # blobs: the version a run pins


class Folder(Protocol):
    @property
    def description(self) -> str: ...

    async def entries(self) -> dict[str, Entry]: ...

    async def read(self, name: str, limit: int) -> bytes: ...

    def location(self, entry: Entry) -> str | BlobLocation: ...


def parent(name: str) -> str:
    return name.rpartition("/")[0]


def is_data_file(name: str) -> bool:
    base = name.rpartition("/")[2]
    return not (base.startswith(("_", ".")) or base.lower().endswith(".json"))


def natural_key(name: str) -> list[Any]:
    """``part_2`` before ``part_10``: the order a person (and the platform) numbered them."""
    return [int(piece) if piece.isdigit() else piece for piece in _DIGITS.split(name)]


def newest_run(entries: dict[str, Entry], where: str) -> list[Entry]:
    data = [entry for entry in entries.values() if is_data_file(entry.name)]
    if not data:
        raise SourceError(f"no segment file in {where}")
    newest = max(data, key=lambda entry: (entry.modified, entry.name))
    folder = parent(newest.name)
    if not folder:
        return [newest]
    return sorted((entry for entry in data if parent(entry.name) == folder), key=lambda entry: natural_key(entry.name))


class LocalFolder:
    def __init__(self, path: Path):
        self.path = path
        self.description = str(path)

    async def entries(self) -> dict[str, Entry]:
        if not self.path.is_dir():
            raise SourceError(f"{self.path} is not a folder")
        found: dict[str, Entry] = {}
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for file in files:
                full = Path(root, file)
                name = full.relative_to(self.path).as_posix()
                if _plain(name) and full.is_file():
                    stat = full.stat()
                    found[name] = Entry(name, stat.st_mtime, stat.st_size)
                    _bounded(found, self.description)
        return found

    async def read(self, name: str, limit: int) -> bytes:
        try:
            with (self.path / name).open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise SourceError(f"cannot read {name} in {self.description}: {exc.strerror}") from None
        return _capped(data, limit, name)

    def location(self, entry: Entry) -> str:
        return str(self.path / entry.name)


@dataclass
class BlobFolder:
    """Every blob under ``prefix`` (ending in ``/``) of one container."""

    account_url: str
    container: str
    prefix: str
    credential: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return f"{self.account_url.rstrip('/')}/{self.container}/{self.prefix}"

    def _client(self) -> ContainerClient:
        from azure.storage.blob.aio import ContainerClient

        credential = self.credential if self.credential is not None else credential_from_environment()
        return ContainerClient(self.account_url, self.container, credential=credential, **self.options)

    async def entries(self) -> dict[str, Entry]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        found: dict[str, Entry] = {}
        try:
            async with self._client() as client:
                async for blob in client.list_blobs(name_starts_with=self.prefix):
                    name = str(blob.name)[len(self.prefix):]
                    if _plain(name):
                        found[name] = Entry(name, blob.last_modified.timestamp(), int(blob.size), blob.etag)
                        _bounded(found, self.description)
        except ResourceNotFoundError:
            raise SourceError(f"no container for {self.description}") from None
        except AzureError as exc:
            raise SourceError(f"cannot list {self.description}: {exc.__class__.__name__}") from None
        return found

    async def read(self, name: str, limit: int) -> bytes:
        from azure.core.exceptions import AzureError

        try:
            async with self._client() as client:
                downloader = await client.get_blob_client(self.prefix + name).download_blob(offset=0, length=limit + 1)
                data = await downloader.readall()
        except AzureError as exc:
            raise SourceError(f"cannot read {name} in {self.description}: {exc.__class__.__name__}") from None
        return _capped(data, limit, name)

    def location(self, entry: Entry) -> BlobLocation:
        return BlobLocation(self.account_url, self.container, self.prefix + entry.name, self.credential, entry.etag,
                            self.options)


def _plain(name: str) -> bool:
    try:
        checked_blob_name(name)
    except OutOfReach:
        return False  # a listed name no blob path check would pass is never read
    return True


def _bounded(found: dict[str, Entry], where: str) -> None:
    if len(found) > MAX_ENTRIES:
        raise SourceError(f"{where} holds more than {MAX_ENTRIES:,} files; move old runs elsewhere")


def _capped(data: bytes, limit: int, name: str) -> bytes:
    if len(data) > limit:
        raise SourceError(f"{name} is larger than {limit // (1024 * 1024)} MiB; a manifest this big is not read")
    return data
