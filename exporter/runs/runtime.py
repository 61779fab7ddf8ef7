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

from azure.keyvault.secrets.aio import SecretClient

from exporter.azure_storage import StorageClients, storage_from_environment
from exporter.config import ExportDefinition, ExportsConfig, parse_config
from exporter.errors import ConfigError
from exporter.klaviyo.auth import ApiKeySource
from exporter.local_secrets import LocalSecretKey, LocalSecretStore
from exporter.manage.audit import AuditTrail
from exporter.manage.backend import Backend
from exporter.manage.document import BlobDocument, ExportsDocument, FileDocument
from exporter.manage.editing import DocumentEditor
from exporter.manage.keys import KeyWriter, LocalKeyWriter, VaultKeyWriter
from exporter.manage.principal import platform_authenticates
from exporter.runs.service import ExportService, ServiceSettings, environment_key_source
from exporter.secrets import KeyVaultApiKey
from exporter.settings import BY_NAME, EXPORTS_CONFIG_FILE, LOCAL_MODE, SECRETS_FILE

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
        self._keys: dict[tuple[str, str | None], KeyVaultApiKey] = {}
        self._config: ExportsConfig | None = None
        self._config_read_at = 0.0
        self._backend: Backend | None = None

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

    def document(self) -> ExportsDocument:
        """The exports document the app runs from, and the management API edits."""
        url = self.setting("EXPORTS_CONFIG_URL")
        if url:
            assert self._storage is not None, "service() first"
            return BlobDocument(url, self._storage.credential, self._storage.options)
        local = self._env.get(EXPORTS_CONFIG_FILE.name)
        return FileDocument(Path(local), writable=True) if local else FileDocument(BUNDLED_CONFIG, writable=False)

    async def load_config(self) -> ExportsConfig:
        if self._config is None or time.monotonic() - self._config_read_at > CONFIG_TTL_SECONDS:
            document = self.document()
            raw, _ = await document.read()
            if raw is None:
                raise ConfigError(f"exports config not found at {document.origin}")
            self._config = parse_config(raw, document.origin)
            self._config_read_at = time.monotonic()
        return self._config

    def forget_config(self) -> None:
        """After the management API wrote the document: the next read sees the change."""
        self._config = None

    def manage(self) -> Backend:
        if self._backend is None:
            service = self.service()
            self._backend = Backend(
                editor=DocumentEditor(self.document(), self.forget_config), key_writer=self._key_writer,
                key_source=self.key_source, klaviyo_url=self.setting("KLAVIYO_BASE_URL"), service=service,
                audit=AuditTrail(service.store.container),
                trusted=platform_authenticates(self._env) or self.local_mode, schedule=self.setting("EXPORT_SCHEDULE"))
        return self._backend

    def _key_writer(self) -> KeyWriter:
        if self.setting("KEY_VAULT_URL"):
            return VaultKeyWriter(self._secret_client())
        if self.local_mode:
            return LocalKeyWriter(self._local_secrets())
        raise ConfigError("KEY_VAULT_URL is not set, so there is nowhere to keep a connection's key")

    def _local_secrets(self) -> LocalSecretStore:
        return LocalSecretStore(Path(self._env.get(SECRETS_FILE.name) or str(SECRETS_FILE.default)).expanduser())

    def _secret_client(self) -> SecretClient:
        if self._secrets is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=self._env.get("AZURE_CLIENT_ID") or None)
            self._secrets = SecretClient(self.setting("KEY_VAULT_URL"), credential)
        return self._secrets

    async def key_source(self, export: ExportDefinition) -> ApiKeySource:
        connection = export.connection
        if connection.env:
            if not self.local_mode:
                raise ConfigError(f"connection {connection.name!r} reads its key from an environment variable, which "
                                  f"only local runs allow ({LOCAL_MODE.name}=true in local.settings.json); in Azure "
                                  "give it a 'key_vault_secret'")
            return environment_key_source(connection.env)
        secret = connection.key_vault_secret or self.setting("KLAVIYO_SECRET_NAME")
        if not self.setting("KEY_VAULT_URL"):
            if self.local_mode:
                return LocalSecretKey(self._local_secrets(), secret, connection.key_version)
            raise ConfigError(f"connection {connection.name!r} keeps its key in Key Vault, but KEY_VAULT_URL is not set")
        wanted = (secret, connection.key_version)
        if wanted not in self._keys:
            self._keys[wanted] = KeyVaultApiKey(self._secret_client(), secret, version=connection.key_version)
        return self._keys[wanted]

    async def aclose(self) -> None:
        if self._service is not None:
            await self._service.aclose()
        if self._storage is not None:
            await self._storage.close()
        if self._secrets is not None:
            await self._secrets.close()
