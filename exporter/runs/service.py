"""The function app's behaviour, free of ``azure.functions``: start runs, carry them out
leg by leg from the queue, and answer for them.

Every start (HTTP, timer, blob drop) becomes a message on the runs queue; a queue
worker runs it under the export's lock with a time budget, checkpointing as Klaviyo
accepts jobs, and hands what is left to a continuation message when the budget runs out.
Each phase has a module of its own: ``starting`` (a start or a refusal), ``legs`` (a leg
from the queue), ``pinning`` (what the first leg fixes for the whole run), ``progress``
(the heartbeat), ``klaviyo_access`` (the key and the account's shared limits),
``finishing`` (the report and the freed export) and ``answers`` (status, overview).
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable

from exporter.azure_storage import StorageClients
from exporter.config import ConfigError, ExportDefinition, ExportsConfig
from exporter.klaviyo.auth import ApiKeySource, StaticApiKey
from exporter.runs.answers import RunAnswers
from exporter.runs.context import KeySourceFactory, RunContext, ServiceSettings
from exporter.runs.finishing import RunFinisher
from exporter.runs.klaviyo_access import KlaviyoAccess
from exporter.runs.legs import LegRunner
from exporter.runs.messages import StartResult
from exporter.runs.pinning import RunPinning
from exporter.runs.starting import RunStarter
from exporter.runs.store import RunStore

__all__ = ["ExportService", "ServiceSettings", "environment_key_source"]


class ExportService:
    def __init__(self, storage: StorageClients, load_config: Callable[[], Awaitable[ExportsConfig]],
                 key_source: KeySourceFactory, settings: ServiceSettings):
        self.storage = storage
        self.settings = settings
        self._key_source = key_source
        self.store = RunStore(storage.blobs.get_container_client(settings.reports_container))
        self.queue = storage.queue(settings.runs_queue)
        self._context = RunContext(storage, settings, self.store, self.queue, load_config, self._key)
        finisher = RunFinisher(self._context)
        self._klaviyo = KlaviyoAccess(self._context)
        self._starter = RunStarter(self._context)
        self._legs = LegRunner(self._context, RunPinning(self._context, finisher), finisher, self._klaviyo)
        self._answers = RunAnswers(self._context)

    async def _key(self, export: ExportDefinition) -> ApiKeySource:
        return await self._key_source(export)  # looked up at each call: the runtime may swap its source

    async def config(self) -> ExportsConfig:
        return await self._context.config()

    async def aclose(self) -> None:
        await self._klaviyo.aclose()
        await self.queue.close()

    async def start(self, name: str, *, dry_run: bool = False, source: str | None = None,
                    trigger: str = "http", wait_if_busy: bool = False, full: bool = False,
                    allow_mass_removal: bool = False) -> StartResult:
        return await self._starter.start(name, dry_run=dry_run, source=source, trigger=trigger,
                                         wait_if_busy=wait_if_busy, full=full, allow_mass_removal=allow_mass_removal)

    async def run_scheduled(self) -> list[StartResult]:
        return await self._starter.run_scheduled()

    async def segment_dropped(self, blob_name: str) -> list[StartResult]:
        return await self._starter.segment_dropped(blob_name)

    async def process(self, text: str, dequeue_count: int = 1) -> None:
        await self._legs.process(text, dequeue_count)

    async def poisoned(self, text: str) -> None:
        await self._legs.poisoned(text)

    async def status(self, name: str, run_id: str) -> dict[str, Any] | None:
        return await self._answers.status(name, run_id)

    async def overview(self) -> list[dict[str, Any]]:
        return await self._answers.overview()


def environment_key_source(variable: str) -> ApiKeySource:
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"environment variable {variable} holds no Klaviyo API key")
    return StaticApiKey(value)
