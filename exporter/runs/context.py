"""What every phase of a run shares: the app's storage, its settings, the run store and the
runs queue, the exports document and where keys come from."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient

from exporter.azure_storage import StorageClients
from exporter.config import ExportDefinition, ExportsConfig
from exporter.klaviyo.auth import ApiKeySource
from exporter.runs.store import RunStore

MAX_WAITS = 60  # a start that finds its export busy retries every WAIT_SECONDS, up to an hour
WAIT_SECONDS = 60

KeySourceFactory = Callable[[ExportDefinition], Awaitable[ApiKeySource]]


@dataclass(frozen=True)
class ServiceSettings:
    segments_container: str = "segments"
    reports_container: str = "reports"
    runs_queue: str = "export-runs"
    klaviyo_base_url: str = "https://a.klaviyo.com"
    time_budget_seconds: float = 1500.0
    run_deadline_seconds: float = 6 * 3600.0  # a run still going after this fails and frees its export
    poll_interval: float = 1.0


@dataclass
class RunContext:
    storage: StorageClients
    settings: ServiceSettings
    store: RunStore
    queue: QueueClient
    load_config: Callable[[], Awaitable[ExportsConfig]]
    key_source: KeySourceFactory
    _ready: bool = field(default=False, repr=False)

    async def config(self) -> ExportsConfig:
        return await self.load_config()

    async def prepare(self) -> None:
        """The reports container and the runs queue, made on first use by a run."""
        if not self._ready:
            await self.store.ensure_container()
            with contextlib.suppress(ResourceExistsError):
                await self.queue.create_queue()
            self._ready = True
