"""Changing one connection or export in the exports document, safely.

A change is checked against what the caller last read (``If-Match``, the item's ETag),
validated with the very rules the app applies when it loads the document, and written
only if nobody wrote the document in between; if somebody did, it is tried again on the
fresh document, where the caller's item must still be as they read it (else ``412``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from exporter.config import ConfigProblems, Connection, ExportsConfig, connections_of, parse_config
from exporter.errors import ConfigError, TransientError
from exporter.manage.document import DocumentChanged, ExportsDocument, item_etag, render

WRITE_ATTEMPTS = 8
KINDS = ("connections", "exports")
_FIELD = re.compile(r"^(?:export|connection) '[^']*': '([a-z_]+)'")


@dataclass(frozen=True)
class Problem:
    field: str | None  # the field it concerns, for a form to show it beside; None: the whole item
    message: str

    def document(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}


class Invalid(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


class PreconditionFailed(Exception):
    """``412``: the item is not as the caller read it."""


class PreconditionRequired(Exception):
    """``428``: changing an existing item needs the ETag it was read with."""


@dataclass(frozen=True)
class Preconditions:
    if_match: str | None = None
    if_none_match: str | None = None


@dataclass
class Snapshot:
    document: dict[str, Any]
    version: str | None

    def item(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((i for i in self.document[kind] if isinstance(i, dict) and i.get("name") == name), None)

    def connections(self) -> dict[str, Connection]:
        return connections_of(self.document)


def expected_etag(current: dict[str, Any] | None, wanted: Preconditions, what: str) -> str | None:
    """The ETag the item must still have when written (None: it must still be absent)."""
    if current is None:
        if wanted.if_match is not None:
            raise PreconditionFailed(f"{what} does not exist (any more): If-Match cannot hold")
        return None
    etag = item_etag(current)
    if wanted.if_none_match == "*":
        raise PreconditionFailed(f"{what} exists already, and If-None-Match: * asked to create it only")
    if wanted.if_match is None:
        raise PreconditionRequired(f"{what} exists: send the ETag you read it with as If-Match, so a change made "
                                   "since is never overwritten unseen")
    if wanted.if_match.strip() not in ("*", etag) and wanted.if_match.strip().removeprefix("W/") != etag:
        raise PreconditionFailed(f"{what} changed since you read it (ETag {etag}); read it again and redo your change")
    return etag


class DocumentEditor:
    def __init__(self, document: ExportsDocument, on_change: Callable[[], None]):
        self._document = document
        self._on_change = on_change  # the app's cached config is stale after a write

    async def snapshot(self) -> Snapshot:
        raw, version = await self._document.read()
        return Snapshot(_loaded(raw, self._document.origin), version)

    async def commit(self, kind: str, name: str, expected: str | None,
                     new_item: dict[str, Any] | None) -> ExportsConfig:
        """Put ``new_item`` in place of the item (None: remove it) if it still has the ETag
        ``expected``; returns the document as the app will load it."""
        for _ in range(WRITE_ATTEMPTS):
            snapshot = await self.snapshot()
            current = snapshot.item(kind, name)
            if (item_etag(current) if current is not None else None) != expected:
                raise PreconditionFailed(f"{kind[:-1]} {name!r} changed while your change was being checked; "
                                         "read it again and redo your change")
            items = [i for i in snapshot.document[kind] if not (isinstance(i, dict) and i.get("name") == name)]
            if new_item is not None:
                position = snapshot.document[kind].index(current) if current is not None else len(items)
                items.insert(position, new_item)
            snapshot.document[kind] = items
            config = validated(snapshot.document, self._document.origin)
            try:
                await self._document.write(render(snapshot.document), snapshot.version)
            except DocumentChanged:
                continue
            self._on_change()
            return config
        raise TransientError("the exports document kept changing while this change was written; try again")


def validated(document: dict[str, Any], origin: str) -> ExportsConfig:
    try:
        return parse_config(render(document), origin)
    except ConfigProblems as exc:
        raise Invalid([Problem(_field_of(p), p) for p in exc.problems]) from None


def _field_of(problem: str) -> str | None:
    match = _FIELD.match(problem)
    if match:
        return match.group(1)
    if "are both bound to" in problem:
        return "source"
    if "mirrors list" in problem:
        return "list_id"
    return None


def _loaded(raw: bytes | None, origin: str) -> dict[str, Any]:
    if raw is None:
        return {"connections": [], "exports": []}
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ConfigError(f"the exports document {origin} is not valid JSON; fix it by hand first") from None
    if not isinstance(document, dict) or not all(isinstance(document.get(k, []), list) for k in KINDS):
        raise ConfigError(f"the exports document {origin} must be an object with lists 'connections' and 'exports'")
    for kind in KINDS:
        document.setdefault(kind, [])
    return document
