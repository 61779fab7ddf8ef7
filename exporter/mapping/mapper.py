"""Turns segment rows into serialized Klaviyo profiles, or into rejects with a reason.

The mapping is compiled once against the segment's header into a flat plan of column
indexes, so the per-row loop does no dictionary lookups by name. Each profile leaves here
already serialized: the batcher needs its exact byte size, and the bytes are what we send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import orjson

from exporter.errors import SourceError
from exporter.klaviyo.limits import MAX_PROFILE_BYTES
from exporter.mapping.fields import LOCATION_PREFIX, PROPERTY_PREFIX, FieldMapping
from exporter.mapping.validate import normalize_email, normalize_phone
from exporter.rejects import Reject
from exporter.sources.rows import UNDECODABLE, RowBlock

MAX_ATTRIBUTE_CHARS = 1_000  # for names, titles, ids: longer values are data errors, not names
_UNDECODABLE = re.compile(f"[{UNDECODABLE}]")


class MappedProfile(NamedTuple):
    """One profile ready to batch: its source line, identity for de-duplication, JSON body."""

    line: int
    email_key: str  # lower-cased email: Klaviyo matches profiles case-insensitively
    body: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    index: int
    column: str
    kind: str  # "attribute", "phone", "location" or "property"
    name: str  # attribute, location or property key


class ProfileMapper:
    """Maps rows of one segment; build it with ``for_columns`` once the header is known."""

    def __init__(self, email_index: int, email_column: str, targets: list[_Target]):
        self._email_index = email_index
        self._email_column = email_column
        self._targets = targets

    @classmethod
    def for_columns(cls, mapping: FieldMapping, columns: Sequence[str]) -> "ProfileMapper":
        """Fail before anything is sent if a mapped column is missing, naming what exists."""
        index = {name: i for i, name in enumerate(columns)}
        missing = [c for c in mapping.columns if c not in index]
        if missing:
            found = ", ".join(repr(c) for c in columns) or "none"
            raise SourceError(f"column(s) {', '.join(map(repr, missing))} not found in the segment; columns found: {found}")
        targets = []
        for target, column in mapping.fields.items():
            if target == "phone_number":
                kind, name = "phone", target
            elif target.startswith(LOCATION_PREFIX):
                kind, name = "location", target[len(LOCATION_PREFIX):]
            elif target.startswith(PROPERTY_PREFIX):
                kind, name = "property", target[len(PROPERTY_PREFIX):]
            else:
                kind, name = "attribute", target
            targets.append(_Target(index[column], column, kind, name))
        return cls(index[mapping.email_column], mapping.email_column, targets)

    def map_block(self, block: RowBlock) -> tuple[list[MappedProfile], list[Reject]]:
        profiles: list[MappedProfile] = []
        rejects: list[Reject] = list(block.rejects)
        for line, row in zip(block.lines, block.rows):
            if block.has_undecodable and _row_is_undecodable(row):
                rejects.append(Reject(line, "", "row holds bytes that are not valid UTF-8"))
                continue
            outcome = self._map_row(line, row)
            if type(outcome) is Reject:
                rejects.append(outcome)
            else:
                profiles.append(outcome)  # type: ignore[arg-type]
        return profiles, rejects

    def _map_row(self, line: int, row: Sequence[object]) -> MappedProfile | Reject:
        raw = row[self._email_index] if self._email_index < len(row) else None
        if raw is None or raw == "":
            return Reject(line, self._email_column, "email is empty")
        if not isinstance(raw, str):
            return Reject(line, self._email_column, "email is not a string")
        email = normalize_email(raw)
        if email is None:
            return Reject(line, self._email_column, "email is not a valid address")
        attributes: dict[str, object] = {"email": email}
        for target in self._targets:
            value = row[target.index] if target.index < len(row) else None
            if value is None or value == "":
                continue
            problem = _put(attributes, target, value)
            if problem:
                return Reject(line, target.column, problem)
        body = orjson.dumps({"type": "profile", "attributes": attributes})
        if len(body) > MAX_PROFILE_BYTES:
            return Reject(line, "", f"profile is {len(body)} bytes; Klaviyo allows {MAX_PROFILE_BYTES}")
        return MappedProfile(line, email.lower(), body)


def _put(attributes: dict[str, object], target: _Target, value: object) -> str | None:
    """Store one mapped value; return why it is unacceptable instead, if it is."""
    if target.kind == "property":
        properties = attributes.setdefault("properties", {})
        properties[target.name] = value  # type: ignore[index]
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f"{target.name} must be text, got {type(value).__name__}"
    text = value.strip() if isinstance(value, str) else str(value)
    if not text:
        return None
    if len(text) > MAX_ATTRIBUTE_CHARS:
        return f"{target.name} is {len(text)} characters; at most {MAX_ATTRIBUTE_CHARS} allowed"
    if target.kind == "phone":
        phone = normalize_phone(text)
        if phone is None:
            return "phone_number is not a valid international (E.164) number"
        attributes["phone_number"] = phone
    elif target.kind == "location":
        location = attributes.setdefault("location", {})
        location[target.name] = text  # type: ignore[index]
    else:
        attributes[target.name] = text
    return None


def _row_is_undecodable(row: Sequence[object]) -> bool:
    return any(isinstance(v, str) and _UNDECODABLE.search(v) for v in row)
