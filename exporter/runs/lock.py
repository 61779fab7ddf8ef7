"""One active run per export: a blob lease on ``{export}/lock`` in the reports container.

The lease id is derived from the run id, so whichever worker carries a run (the first
leg or a continuation on another instance) holds the same lease, while any other run is
refused. Leases last 60 s and are renewed while the run works: if the process dies, the
export unlocks by itself within a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

LEASE_SECONDS = 60
RENEW_EVERY = 20
_NAMESPACE = uuid.UUID("6f1c1a52-8f0e-4d7c-9d6b-2f7a4e0d1c3b")


def lease_id(run_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, run_id))


class ExportLock:
    def __init__(self, container: ContainerClient, export: str):
        self._blob = container.get_blob_client(f"{export}/lock")
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, run_id: str) -> bool:
        """Take (or keep) the lock for ``run_id``; False if another run holds it."""
        with contextlib.suppress(ResourceExistsError):
            await self._blob.upload_blob(b"", overwrite=False)
        lease = BlobLeaseClient(self._blob, lease_id=lease_id(run_id))
        try:
            await lease.acquire(lease_duration=LEASE_SECONDS)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # leased by another run
                return False
            raise
        await self._blob.set_blob_metadata({"run_id": run_id}, lease=lease)
        return True

    async def holder(self) -> str | None:
        """The run id holding the lock, or None if the export is free."""
        try:
            properties = await self._blob.get_blob_properties()
        except HttpResponseError:
            return None
        if properties.lease.state != "leased":
            return None
        return properties.metadata.get("run_id")

    def keep_alive(self, run_id: str) -> None:
        """Renew the lease in the background until ``release`` or ``stop_renewing``."""
        lease = BlobLeaseClient(self._blob, lease_id=lease_id(run_id))

        async def renew() -> None:
            while True:
                await asyncio.sleep(RENEW_EVERY)
                with contextlib.suppress(HttpResponseError):
                    await lease.renew()

        self._renewer = asyncio.create_task(renew())

    async def stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def release(self, run_id: str) -> None:
        await self.stop_renewing()
        with contextlib.suppress(HttpResponseError):
            await BlobLeaseClient(self._blob, lease_id=lease_id(run_id)).release()
