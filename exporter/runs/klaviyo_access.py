"""Klaviyo for a run's leg: one HTTP session per process, the key from where its connection
keeps it, and the limits of the account the key belongs to, shared by every run on it."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from exporter.config import ExportDefinition
from exporter.klaviyo.accounts import LimitScope, limit_scope
from exporter.klaviyo.client import KlaviyoClient, new_session
from exporter.klaviyo.shared_limits import BlobSchedule, SharedRateLimiter, shared_limiters
from exporter.runs.context import RunContext

if TYPE_CHECKING:
    import aiohttp


class KlaviyoAccess:
    def __init__(self, context: RunContext):
        self._context = context
        self._session: aiohttp.ClientSession | None = None
        # Klaviyo's limits are the account's: every run on one account, in any process or instance, reserves
        # its requests in one schedule per tier in the reports container (klaviyo.shared_limits).
        self._limiters: dict[str, dict[str, SharedRateLimiter]] = {}
        self._scopes: dict[str, LimitScope] = {}  # connection -> the account its key belongs to

    @contextlib.asynccontextmanager
    async def client(self, export: ExportDefinition, dry_run: bool) -> Any:
        if dry_run:
            yield None
            return
        if self._session is None or self._session.closed:
            self._session = new_session(64)
        key = await self._context.key_source(export)
        connection = export.connection
        if connection.name not in self._scopes:
            self._scopes[connection.name] = await limit_scope(self._context.settings.klaviyo_base_url, key, connection.name,
                                                              connection.klaviyo_account)
        scope = self._scopes[connection.name]
        container = self._context.store.container
        limiters = self._limiters.setdefault(scope.name, shared_limiters(lambda name: BlobSchedule(container, name),
                                                                         scope.name))
        async with KlaviyoClient(key, self._context.settings.klaviyo_base_url, session=self._session, limiter=limiters["import"],
                                 tier_limiters=dict(limiters)) as client:
            client.limits_note = scope.note
            yield client

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
