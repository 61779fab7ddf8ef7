"""``klaviyo-export check-config FILE``: an exports document checked before it is uploaded.

Offline, with the rules the app applies when it loads the document (every problem at once).
Online (``--online``), each connection's key is tried and each export's list looked up with
read-only calls, so a wrong key or list id is found at the desk, not at the first run. Keys
come from where the document says: a connection's ``env`` variable, or its Key Vault secret
in ``--key-vault-url`` (or ``KEY_VAULT_URL``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config import ConfigProblems, Connection, ExportsConfig, parse_config
from exporter.errors import ConfigError, ExportError, KlaviyoAuthError
from exporter.klaviyo.auth import ApiKeySource, api_key_from_environment


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was confirmed online


def check_offline(path: Path) -> tuple[ExportsConfig | None, Findings]:
    findings = Findings()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        findings.problems.append(f"cannot read {path}: {exc.strerror or exc}")
        return None, findings
    try:
        return parse_config(raw, str(path)), findings
    except ConfigProblems as exc:
        findings.problems += exc.problems
    except ConfigError as exc:
        findings.problems.append(str(exc))
    return None, findings


async def check_online(config: ExportsConfig, findings: Findings, klaviyo_url: str, key_vault_url: str | None) -> None:
    """Each connection's key, then each of its exports' lists, by read-only calls."""
    from exporter.klaviyo.client import KlaviyoClient  # the HTTP stack only when going online

    async with contextlib.AsyncExitStack() as stack:
        vault = None
        for connection in sorted({e.connection for e in config.exports.values()}, key=lambda c: c.name):
            exports = sorted((e for e in config.exports.values() if e.connection == connection), key=lambda e: e.name)
            if connection.key_vault_secret and vault is None and key_vault_url:
                from exporter.secrets import key_vault_client

                vault = await stack.enter_async_context(key_vault_client(key_vault_url))
            key = _key_for(connection, vault)
            if key is None:
                where = (f"environment variable {connection.env}" if connection.env else
                         f"Key Vault secret {connection.key_vault_secret!r} (pass --key-vault-url or set KEY_VAULT_URL)")
                findings.problems.append(f"connection {connection.name!r}: no key at hand in {where}; not checked online")
                continue
            async with KlaviyoClient(key, klaviyo_url, rate_limits=None) as client:
                for export in exports:
                    try:
                        name = await client.check_list(export.list_id)
                    except KlaviyoAuthError as exc:
                        findings.problems.append(f"connection {connection.name!r}: Klaviyo refused the key ({exc})")
                        break
                    except ExportError as exc:
                        findings.problems.append(f"export {export.name!r}: {exc}")
                        continue
                    findings.checked.append(f"export {export.name!r}: list {export.list_id!r} ({name}) exists")


def _key_for(connection: Connection, vault: Any) -> ApiKeySource | None:
    if connection.env:
        return api_key_from_environment(connection.env)
    if vault is None or not connection.key_vault_secret:
        return None
    from exporter.secrets import KeyVaultApiKey

    return KeyVaultApiKey(vault, connection.key_vault_secret)
