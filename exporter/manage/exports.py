"""Exports, as the people allowed on a connection set them up: the list, the email column
and the mapping, the mode. Saving checks what only Klaviyo and the segment can say (the
list exists for that connection's key; the mapped columns are in the source's header)
and never starts a run: runs come with each refresh, or on demand.
"""

from __future__ import annotations

from typing import Any

from exporter.config import EXPORT_NAME, Connection, ExportDefinition
from exporter.errors import KlaviyoAuthError, KlaviyoRequestError, SourceError, TransientError
from exporter.klaviyo.client import NotFound
from exporter.manage.backend import Backend, Conflict, NotFoundItem
from exporter.manage.document import item_etag
from exporter.manage.editing import Invalid, Preconditions, Problem, Snapshot, expected_etag, validated
from exporter.manage.klaviyo_checks import list_name
from exporter.manage.principal import Principal
from exporter.manage.roles import Forbidden, is_admin, may_use, require_a_role, require_use
from exporter.runs.lock import ExportLock
from exporter.sources.header import source_columns

# What the loader reads from an export (``exporter.config``); anything else in a body is refused.
FIELDS = {"connection", "source", "list_id", "mapping", "enabled", "encoding", "format", "columns", "entity",
          "settle_seconds", "mode", "full_every", "max_remove_fraction", "max_rejected_fraction", "clear_emptied",
          "phone_region", "invalid_fields", "identity", "consent"}


class Exports:
    def __init__(self, backend: Backend):
        self._backend = backend

    async def listing(self, principal: Principal) -> list[dict[str, Any]]:
        """The exports on connections the caller may use, each with its newest run."""
        require_a_role(principal)
        config = await self._backend.service.config()
        usable = {e.name: e for e in config.exports.values() if may_use(principal, e.connection)}
        return [e | {"mode": usable[e["name"]].mode, "connection_name": usable[e["name"]].connection.name}
                for e in await self._backend.service.overview() if e["name"] in usable]

    async def get(self, principal: Principal, name: str) -> tuple[dict[str, Any], str]:
        snapshot = await self._backend.editor.snapshot()
        item = self._usable(principal, snapshot, name)
        return item, item_etag(item)

    async def put(self, principal: Principal, name: str, body: dict[str, Any],
                  wanted: Preconditions) -> tuple[bool, dict[str, Any], str, list[str]]:
        """Create or change an export; returns (created, what is stored, its ETag, warnings)."""
        require_a_role(principal)
        if not EXPORT_NAME.fullmatch(name):
            raise Invalid([Problem("name", "an export's name is 1-63 letters, digits, '-' or '_', starting with a "
                                           "letter or digit")])
        _check_fields(body, name)
        snapshot = await self._backend.editor.snapshot()
        current = snapshot.item("exports", name)
        if current is not None:
            self._usable(principal, snapshot, name)
        connection = snapshot.connections().get(body.get("connection"))  # type: ignore[arg-type]
        if connection is None:
            known = ", ".join(sorted(c.name for c in snapshot.connections().values() if may_use(principal, c)))
            raise Invalid([Problem("connection", f"no connection named {body.get('connection')!r} "
                                                 f"(those you may use: {known or 'none'})")])
        require_use(principal, connection)
        expected = expected_etag(current, wanted, f"export {name!r}")
        item = {"name": name, **{k: v for k, v in body.items() if k != "name"}}
        trial = dict(snapshot.document)
        trial["exports"] = [i for i in snapshot.document["exports"] if not (isinstance(i, dict) and i.get("name") == name)]
        trial["exports"].append(item)
        definition = validated(trial, "your export").export(name)
        await self._check_list(definition)
        warnings = await self._header_warnings(definition)
        await self._backend.editor.commit("exports", name, expected, item)
        await self._backend.audit.record(principal, "create" if current is None else "update", "exports", name,
                                         current, item)
        return current is None, item, item_etag(item), warnings

    async def delete(self, principal: Principal, name: str, wanted: Preconditions) -> None:
        snapshot = await self._backend.editor.snapshot()
        current = self._usable(principal, snapshot, name)
        expected = expected_etag(current, wanted, f"export {name!r}")
        holder = await ExportLock(self._backend.service.store.container, name).holder()
        if holder is not None:
            raise Conflict(f"export {name!r} has an active run ({holder}); delete it once that run ends")
        await self._backend.editor.commit("exports", name, expected, None)
        await self._backend.audit.record(principal, "delete", "exports", name, current, None)

    def _usable(self, principal: Principal, snapshot: Snapshot, name: str) -> dict[str, Any]:
        """The export's stored item, if it exists and the caller may use its connection."""
        require_a_role(principal)
        item = snapshot.item("exports", name)
        if item is None:
            raise NotFoundItem(f"no export named {name!r}")
        connection: Connection | None = snapshot.connections().get(item.get("connection"))  # type: ignore[arg-type]
        if connection is None and not is_admin(principal):
            raise Forbidden(f"export {name!r} names no connection you may use")
        if connection is not None:
            require_use(principal, connection)
        return item

    async def _check_list(self, export: ExportDefinition) -> None:
        try:
            key = await self._backend.key_source(export)
            await list_name(self._backend.klaviyo_url, key, export.list_id)
        except NotFound:
            raise Invalid([Problem("list_id", f"Klaviyo has no list {export.list_id!r} in the account of connection "
                                              f"{export.connection.name!r}; nothing was saved")]) from None
        except KlaviyoAuthError as exc:
            raise Invalid([Problem("connection", f"connection {export.connection.name!r}: {exc}; an administrator "
                                                 "must give it a working key; nothing was saved")]) from None
        except KlaviyoRequestError as exc:
            raise TransientError(f"Klaviyo could not confirm the list ({exc}); nothing was saved, try again") from None

    async def _header_warnings(self, export: ExportDefinition) -> list[str]:
        try:
            columns = await source_columns(self._backend.service, export)
        except SourceError as exc:
            return [f"the source could not be read to check the mapped columns: {exc}"]
        if columns is None:
            return [f"no segment at {export.source!r} yet: the mapped columns are checked when the first run reads it"]
        missing = [c for c in export.mapping.columns if c not in columns]
        if not missing:
            return []
        return [f"column(s) {', '.join(map(repr, missing))} of the mapping are not in the source's header "
                f"(it has: {', '.join(map(repr, columns[:50]))}); a run would fail or reject rows until they are"]


def _check_fields(body: dict[str, Any], name: str) -> None:
    problems = [Problem(field, f"{field!r} is not a setting of an export (they are: {', '.join(sorted(FIELDS))})")
                for field in sorted(set(body) - FIELDS - {"name"})]
    if "name" in body and body["name"] != name:
        problems.append(Problem("name", "the body's 'name' differs from the export named in the URL; leave it out"))
    if problems:
        raise Invalid(problems)
