"""The command line's share of Klaviyo's account-wide limits: runs started from one folder
share ``.exporter-state/`` and reserve their requests in one schedule file per account and
tier there (a lock, on one machine); runs whose state is in a blob container reserve in a
blob beside it, as the app's instances do."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from exporter.klaviyo.accounts import LimitScope, limit_scope
from exporter.klaviyo.auth import ApiKeySource
from exporter.klaviyo.shared_limits import BlobSchedule, FileSchedule, SharedRateLimiter, shared_limiters
from exporter.sources import is_blob_url
from exporter.sources.files import blob_folder_address, credential_from_environment


async def cli_limiters(key: ApiKeySource, klaviyo_url: str, state: str | None, local_folder: Path,
                       stack: contextlib.AsyncExitStack) -> tuple[dict[str, SharedRateLimiter], LimitScope]:
    fingerprint = hashlib.sha256((await key.get()).encode()).hexdigest()[:12]  # never the key itself
    scope = await limit_scope(klaviyo_url, key, f"key-{fingerprint}", None)
    if scope.note:  # no connection on the command line: the key's fingerprint stands in for it
        scope = LimitScope(scope.name, "the key lacks the accounts:read scope, so Klaviyo's rate limits are shared "
                                       "only with runs using the same key, not other keys of the account; give the "
                                       "key accounts:read")
    if state and is_blob_url(state):
        from azure.storage.blob.aio import ContainerClient

        account_url, container, _ = blob_folder_address(state if state.endswith("/") else state + "/")
        sas = urlsplit(state).query or None
        client = await stack.enter_async_context(
            ContainerClient(account_url, container, credential=sas or credential_from_environment()))
        return shared_limiters(lambda name: BlobSchedule(client, name), scope.name), scope
    return shared_limiters(lambda name: FileSchedule(local_folder / name), scope.name), scope
