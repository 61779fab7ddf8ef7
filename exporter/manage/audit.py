"""Every change to a connection or an export, recorded: who, when, what, and which fields
changed from what to what. Kept as a JSON record under ``_audit/`` in the reports
container (no export can be named so: names start with a letter or digit) and written as
a structured log record for KQL. A key is never in either: the document never holds one,
and a replaced key shows only as "replaced".

The log record names the fields that changed, never their values or the person's name:
values may be anything a person typed, and names are often email addresses.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import ContainerClient

from exporter.manage.principal import Principal

AUDIT_PREFIX = "_audit/"
KEY_FIELDS = ("key_vault_secret", "key_version", "env")  # where a key lives: shown as replaced, never as values

log = logging.getLogger("exporter.audit")


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    old, new = before or {}, after or {}
    changed: dict[str, Any] = {}
    for field in sorted(set(old) | set(new)):
        if field == "name" or old.get(field) == new.get(field):
            continue
        if field in KEY_FIELDS:
            changed["key"] = "replaced"
            continue
        changed[field] = {"from": old.get(field), "to": new.get(field)}
    return changed


class AuditTrail:
    def __init__(self, container: ContainerClient):
        self._container = container

    async def record(self, principal: Principal, action: str, kind: str, name: str,
                     before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
        now = datetime.now(UTC)
        entry = {"at": now.isoformat(timespec="milliseconds"), "action": action, "kind": kind, "name": name,
                 "by": {"object_id": principal.object_id, "name": principal.name, "roles": sorted(principal.roles)},
                 "changes": changes(before, after)}
        fields = sorted(entry["changes"])
        log.info("audit: %s %s %s by %s; fields: %s", action, kind, name, principal.object_id, ", ".join(fields) or "none",
                 extra={"audit": {"action": action, "kind": kind, "name": name, "by": principal.object_id,
                                  "fields": fields}})
        blob = f"{AUDIT_PREFIX}{now:%Y/%m/%d/%H%M%S.%f}-{kind[:-1]}-{name}-{uuid.uuid4().hex[:8]}.json"
        body = orjson.dumps(entry, option=orjson.OPT_INDENT_2)
        try:
            try:
                await self._container.upload_blob(blob, body, overwrite=False)
            except ResourceNotFoundError:  # a new app: no run has made the reports container yet
                with contextlib.suppress(ResourceExistsError):
                    await self._container.create_container()
                await self._container.upload_blob(blob, body, overwrite=False)
        except AzureError as exc:
            log.error("audit record not stored for %s %s %s: %s (the change stands; the log record above is the "
                      "only trace)", action, kind, name, exc.__class__.__name__)
        return entry
