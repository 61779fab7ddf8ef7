"""Klaviyo keys on a developer's machine, where there is no Key Vault: one JSON file
outside the repository, readable and writable by its owner only (like ``~/.ssh``).

The management API writes a connection's key here in local mode, exactly as it writes
to Key Vault in Azure (a name, a new version each time), and runs read it back the same
way, so the whole set-up flow runs on a laptop and in the tests without a vault. A file
that others may read is refused, not silently used.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import uuid
from pathlib import Path

import orjson

from exporter.errors import ConfigError

DEFAULT_PATH = Path.home() / ".klaviyo-exporter" / "secrets.json"


class LocalSecretStore:
    def __init__(self, path: Path = DEFAULT_PATH):
        self.path = path

    def store(self, name: str, value: str) -> str:
        """Keep ``value`` as a new version of secret ``name``; returns the version id."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        version = uuid.uuid4().hex
        lock_path = self.path.with_name(self.path.name + ".lock")
        descriptor = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        with os.fdopen(descriptor, "r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            secrets = self._load()
            entry = secrets.setdefault(name, {"versions": {}})
            entry["versions"][version] = value
            entry["current"] = version
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(orjson.dumps(secrets))
                os.replace(temporary, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
        return version

    def read(self, name: str, version: str | None = None) -> str:
        entry = self._load().get(name)
        if not isinstance(entry, dict):
            raise ConfigError(f"the local secret store {self.path} has no secret named {name!r}")
        value = entry.get("versions", {}).get(version or entry.get("current"))
        if not isinstance(value, str) or not value:
            raise ConfigError(f"the local secret store {self.path} has no version {version!r} of secret {name!r}")
        return value

    def _load(self) -> dict[str, dict]:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return {}
        if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or status.st_uid != os.getuid():
            raise ConfigError(f"the local secret store {self.path} may be read by others; it must belong to you "
                              f"with mode 600 (chmod 600 {self.path})")
        try:
            secrets = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"the local secret store {self.path} cannot be read: {exc.__class__.__name__}") from None
        if not isinstance(secrets, dict):
            raise ConfigError(f"the local secret store {self.path} is not a JSON object")
        return secrets


class LocalSecretKey:
    """An ``ApiKeySource`` reading one secret (one version, or its newest) from the store."""

    def __init__(self, store: LocalSecretStore, name: str, version: str | None = None):
        self._store, self._name, self._version = store, name, version

    async def get(self) -> str:
        return self._store.read(self._name, self._version)

    async def refresh(self) -> bool:
        return False  # every get reads the file: nothing is cached to refresh

    def __repr__(self) -> str:
        return f"LocalSecretKey(secret={self._name!r})"
