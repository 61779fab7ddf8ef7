"""Process-wide wiring for the function app, built lazily from app settings.

The Python worker runs every ``async def`` function on one event loop, so one set of
clients (storage, Key Vault, the Klaviyo HTTP session inside the service) serves every
invocation instead of one per call. The exports config is re-read at most once a minute,
so an edit takes effect without a restart.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient
from azure.storage.blob.aio import BlobClient

from exporter.azure_storage import StorageClients, storage_from_environment
from exporter.config import ExportDefinition, ExportsConfig, load_config_file, parse_config
from exporter.errors import ConfigError
from exporter.klaviyo.auth import ApiKeySource
from exporter.runs.service import ExportService, ServiceSettings, environment_key_source
from exporter.secrets import KeyVaultApiKey
from exporter.settings import BY_NAME, EXPORTS_CONFIG_FILE, LOCAL_MODE

BUNDLED_CONFIG = Path(__file__).resolve().parents[2] / "exports.json"
CONFIG_TTL_SECONDS = 60.0


class AppRuntime:
    def __init__(self, environ: Mapping[str, str] | None = None, *, storage_credential: Any = None,
                 storage_options: Mapping[str, Any] | None = None):
        """``storage_credential`` and ``storage_options`` reach the storage clients: in Azure
        neither is given (the managed identity, default transport); tests inject a token
        credential and a CA bundle to run against Azurite over HTTPS with bearer tokens."""
        import os

        self._env = dict(os.environ if environ is None else environ)
        self._storage_credential = storage_credential
        self._storage_options = dict(storage_options or {})
        self._storage: StorageClients | None = None
        self._service: ExportService | None = None
        self._secrets: SecretClient | None = None
        self._keys: dict[str, KeyVaultApiKey] = {}
        self._config: ExportsConfig | None = None
        self._config_read_at = 0.0

    def setting(self, name: str) -> str:
        return self._env.get(name) or (BY_NAME[name].default or "")

    @property
    def local_mode(self) -> bool:
        return self._env.get(LOCAL_MODE.name, "").strip().lower() in ("true", "1", "yes")

    def service(self) -> ExportService:
        if self._service is None:
            self._storage = storage_from_environment(self._env, self._storage_credential, **self._storage_options)
            settings = ServiceSettings(
                segments_container=self.setting("SEGMENTS_CONTAINER"),
                reports_container=self.setting("REPORTS_CONTAINER"),
                runs_queue=self.setting("RUNS_QUEUE"),
                klaviyo_base_url=self.setting("KLAVIYO_BASE_URL"),
                time_budget_seconds=float(self.setting("RUN_TIME_BUDGET_SECONDS")),
                run_deadline_seconds=float(self.setting("RUN_DEADLINE_SECONDS")),
                poll_interval=float(self._env.get("KLAVIYO_POLL_SECONDS", "1")),
            )
            self._service = ExportService(self._storage, self.load_config, self.key_source, settings)
        return self._service

    async def load_config(self) -> ExportsConfig:
        if self._config is None or time.monotonic() - self._config_read_at > CONFIG_TTL_SECONDS:
            url = self.setting("EXPORTS_CONFIG_URL")
            if url:
                assert self._storage is not None
                raw = await _download(url, self._storage.credential, self._storage.options)
                self._config = parse_config(raw, url.split("?")[0])
            else:
                self._config = load_config_file(Path(self._env.get(EXPORTS_CONFIG_FILE.name) or BUNDLED_CONFIG))
            self._config_read_at = time.monotonic()
        return self._config

    async def key_source(self, export: ExportDefinition) -> ApiKeySource:
        connection = export.connection
        if connection.env:
            if not self.local_mode:
                raise ConfigError(f"connection {connection.name!r} reads its key from an environment variable, which "
                                  f"only local runs allow ({LOCAL_MODE.name}=true in local.settings.json); in Azure "
                                  "give it a 'key_vault_secret'")
            return environment_key_source(connection.env)
        vault_url = self.setting("KEY_VAULT_URL")
        if not vault_url:
            raise ConfigError(f"connection {connection.name!r} keeps its key in Key Vault, but KEY_VAULT_URL is not set")
        secret = connection.key_vault_secret or self.setting("KLAVIYO_SECRET_NAME")
        if secret not in self._keys:
            if self._secrets is None:
                from azure.identity.aio import DefaultAzureCredential

                credential = DefaultAzureCredential(managed_identity_client_id=self._env.get("AZURE_CLIENT_ID") or None)
                self._secrets = SecretClient(vault_url, credential)
            self._keys[secret] = KeyVaultApiKey(self._secrets, secret)
        return self._keys[secret]

    async def aclose(self) -> None:
        if self._service is not None:
            await self._service.aclose()
        if self._storage is not None:
            await self._storage.close()
        if self._secrets is not None:
            await self._secrets.close()


async def _download(url: str, credential: Any, options: Mapping[str, Any]) -> bytes:
    try:
        async with BlobClient.from_blob_url(url, credential=credential, **options) as blob:
            return await (await blob.download_blob()).readall()
    except ResourceNotFoundError:
        raise ConfigError(f"exports config not found at {url.split('?')[0]}") from None
    except AzureError as exc:
        raise ConfigError(f"cannot read exports config at {url.split('?')[0]}: {exc.__class__.__name__}") from None
