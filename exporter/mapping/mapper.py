"""Turns segment rows into Klaviyo profile attributes, or into rejects with a reason.

The mapping is compiled once against the segment's header into flat lists of column
indexes per kind of field, so the per-row loop does no lookups by name and calls no
helper for the common case: this loop runs once per row, a million times a segment.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, NamedTuple, Sequence

from exporter.errors import SourceError
from exporter.mapping.consent import Consent, ConsentReader
from exporter.mapping.fields import LOCATION_PREFIX, PROPERTY_PREFIX, FieldMapping
from exporter.mapping.types import CONVERTERS, NotOfType
from exporter.mapping.validate import normalize_email, normalize_phone
from exporter.rejects import Reject
from exporter.sources.rows import UNDECODABLE, RowBlock

MAX_ATTRIBUTE_CHARS = 1_000  # for names, titles, ids: longer values are data errors, not names
MAX_COLUMNS_SHOWN = 30
_UNDECODABLE = re.compile(f"[{UNDECODABLE}]")
# A column name: short words with the punctuation headers use. An address, a number, a
# date, a token or JSON does not look like this, so it is never echoed as a "column".
_COLUMN_NAME = re.compile(r"(?=.*[^\W\d])[\w][\w .()#/&+-]{0,47}", re.UNICODE)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{24,}")


def looks_like_header(columns: Sequence[str]) -> bool:
    """Does this first row read like column names (so naming them in an error is safe)?"""
    names = [c for c in columns if c]
    return bool(names) and all(_COLUMN_NAME.fullmatch(c) and not _LONG_TOKEN.search(c) for c in names)


class MappedProfile(NamedTuple):
    """One valid profile: its source line, identity for de-duplication, and attributes."""

    line: int
    email_key: str  # lower-cased email: Klaviyo matches profiles case-insensitively
    attributes: dict[str, Any]
    consent: Consent | None = None  # the channels the row consents to subscribe on, and when
    fields_set: int = 0  # bit j: the j-th of ``ProfileMapper.tracked`` has a value (clear_emptied)


class ProfileMapper:
    """Maps rows of one segment; build it with ``for_columns`` once the header is known."""

    def __init__(self, mapping: FieldMapping, index: dict[str, int], encoding: str = "UTF-8",
                 column_types: dict[str, str] | None = None, track_fields: bool = False):
        """``column_types``: types the source states for its columns (a CDM attribute's
        ``dataType``), for the custom properties whose mapping names none; ``track_fields``:
        note which mapped fields each profile has (``tracked``), so emptied ones can be cleared."""
        self._email = index[mapping.email_column] if mapping.email_column else None
        self._email_column = mapping.email_column
        self._identity = mapping.identity
        self._email_required = mapping.identity == ("email",)  # else an email is one optional field among others
        self._identity_columns = [mapping.email_column if kind == "email" else mapping.fields[kind]
                                  for kind in mapping.identity]
        self._region = mapping.phone_region
        self._reject_invalid = mapping.invalid_fields == "reject"
        self._phone_problem = (f"phone_number is not a valid phone number for region {mapping.phone_region}"
                               if mapping.phone_region else
                               "phone_number is not a valid international (E.164) number; set a phone region "
                               "to accept local formats")
        self._encoding = encoding
        self._warnings: list[Reject] = []
        self.undecodable_rows = 0
        self._text: list[tuple[int, str, str]] = []  # (index, attribute, column)
        self._location: list[tuple[int, str, str]] = []
        self._properties: list[tuple[int, str, str, str | None]] = []  # (index, name, column, type)
        self._phone: tuple[int, str] | None = None
        for target, column in mapping.fields.items():
            i = index[column]
            if target == "phone_number":
                self._phone = (i, column)
            elif target.startswith(LOCATION_PREFIX):
                self._location.append((i, target[len(LOCATION_PREFIX):], column))
            elif target.startswith(PROPERTY_PREFIX):
                kind = mapping.types.get(target) or (column_types or {}).get(column)
                typed = kind if kind in CONVERTERS and kind != "string" else None  # state from storage is input too
                self._properties.append((i, target[len(PROPERTY_PREFIX):], column, typed))
            else:
                self._text.append((i, target, column))
        self._consent = ConsentReader(mapping.consent, index) if mapping.consent else None
        # Consent and typed properties are read on the row path only (the columnar one maps text).
        # The fields whose emptying clears them: every mapped one but an identity (never cleared).
        self.tracked = sorted(t for t in mapping.fields if t not in mapping.identity) if track_fields else []
        if len(self.tracked) > 64:
            raise SourceError("clear_emptied keeps track of at most 64 mapped fields")
        self.needs_rows = self._consent is not None or any(kind for *_, kind in self._properties) \
            or not self._email_required or bool(self.tracked)
        self._width = 1 + max(index.values()) if index else 1
        # The columns a profile is made of, its first identity first: the same values make the
        # same profile (and the same consent: a changed consent column makes a changed row).
        columns = list(mapping.columns)
        columns.remove(self._identity_columns[0])
        self.value_indexes = [index[c] for c in (self._identity_columns[0], *columns)]

    @classmethod
    def for_columns(cls, mapping: FieldMapping, columns: Sequence[str], encoding: str = "UTF-8",
                    column_types: dict[str, str] | None = None, track_fields: bool = False) -> ProfileMapper:
        """Fail before anything is sent if a mapped column is missing, naming what exists."""
        index = {name: i for i, name in reversed(list(enumerate(columns)))}  # first of a repeated name wins
        missing = [c for c in mapping.columns if c not in index]
        if missing:
            wanted = ", ".join(map(repr, missing))
            if not looks_like_header(columns):  # never echo what may be a customer's data (or a secret)
                raise SourceError(f"column(s) {wanted} not found: the first row of the segment looks like data, "
                                  f"not a header ({len(columns)} fields); add a header row naming the columns, or "
                                  "name them with --columns A,B,C (\"columns\" in an export)")
            shown = columns[:MAX_COLUMNS_SHOWN]
            found = ", ".join(repr(c) for c in shown) or "none"
            more = f" and {len(columns) - len(shown)} more" if len(columns) > len(shown) else ""
            raise SourceError(f"column(s) {wanted} not found in the segment; columns found: {found}{more}")
        return cls(mapping, {c: index[c] for c in mapping.columns}, encoding, column_types, track_fields)

    def map_block(self, block: RowBlock) -> tuple[list[MappedProfile], list[Reject], list[Reject]]:
        """Profiles, rejected rows, and warnings (fields left out of a profile that was kept)."""
        profiles, rejects, warnings = self.map_rows(block.lines, block.rows, block.has_undecodable)
        return profiles, [*block.rejects, *rejects], warnings

    def map_rows(self, lines: Sequence[int], rows: Sequence[Sequence[Any]],
                 check_bytes: bool = False) -> tuple[list[MappedProfile], list[Reject], list[Reject]]:
        """``map_block`` for rows given apart (``check_bytes``: some may hold undecodable bytes)."""
        profiles: list[MappedProfile] = []
        rejects: list[Reject] = []
        self._warnings = warnings = list[Reject]()
        for line, row in zip(lines, rows, strict=True):
            if check_bytes and _row_is_undecodable(row):
                self.undecodable_rows += 1
                rejects.append(Reject(line, "", f"row holds bytes that are not valid {self._encoding}"))
                continue
            outcome = self.map_row(line, row)
            if type(outcome) is Reject:
                rejects.append(outcome)
            else:
                profiles.append(outcome)  # type: ignore[arg-type]
        return profiles, rejects, warnings

    def _invalid(self, line: int, column: str, problem: str) -> Reject | None:
        """An optional field is invalid: the row's reject, or None after noting a warning
        (the field is left out and the row goes on)."""
        if self._reject_invalid:
            return Reject(line, column, problem)
        self._warnings.append(Reject(line, column, f"{problem}; left out, the row was sent without it"))
        return None

    def map_row(self, line: int, row: Sequence[Any]) -> MappedProfile | Reject:
        if len(row) < self._width:
            row = [*row, *([None] * (self._width - len(row)))]
        attributes: dict[str, Any] = {}
        if self._email is not None:
            raw = row[self._email]
            problem = "email is empty" if not raw else "email is not a string" if type(raw) is not str else None
            email = normalize_email(raw) if problem is None else None
            if problem is None and email is None:
                problem = "email is not a valid address"
            if problem is not None:
                if self._email_required:
                    return Reject(line, self._email_column, problem)
                if raw and (reject := self._invalid(line, self._email_column, problem)) is not None:
                    return reject
            else:
                attributes["email"] = email
        for i, name, column in self._text:
            value = row[i]
            if value:
                text = value.strip() if type(value) is str else _as_text(value)
                problem = None
                if text is None:
                    problem = f"{name} must be text, got {type(value).__name__}"
                elif len(text) > MAX_ATTRIBUTE_CHARS:
                    problem = f"{name} is {len(text)} characters; at most {MAX_ATTRIBUTE_CHARS} allowed"
                if problem is not None:
                    if (reject := self._invalid(line, column, problem)) is not None:
                        return reject
                elif text:
                    attributes[name] = text
        if self._phone is not None:
            value = row[self._phone[0]]
            if value:
                phone = normalize_phone(value, self._region) if type(value) is str else None
                if phone is not None:
                    attributes["phone_number"] = phone
                elif (reject := self._invalid(line, self._phone[1], self._phone_problem)) is not None:
                    return reject
        if self._location:
            location = {}
            for i, name, column in self._location:
                value = row[i]
                if value:
                    text = value.strip() if type(value) is str else _as_text(value)
                    if text is None or len(text) > MAX_ATTRIBUTE_CHARS:
                        problem = f"location.{name} must be text of at most {MAX_ATTRIBUTE_CHARS} characters"
                        if (reject := self._invalid(line, column, problem)) is not None:
                            return reject
                    elif text:
                        location[name] = text
            if location:
                attributes["location"] = location
        if self._properties:
            properties = {}
            for i, name, column, kind in self._properties:
                value = row[i]
                if value is not None and value != "":
                    if kind is not None:
                        try:
                            value = CONVERTERS[kind](value)
                        except NotOfType:
                            problem = f"properties.{name} is not a {kind}"
                            if (reject := self._invalid(line, column, problem)) is not None:
                                return reject
                            continue
                    properties[name] = value
            if properties:
                attributes["properties"] = properties
        identity = self._identity_of(attributes)
        if identity is None:
            return Reject(line, self._identity_columns[0], f"no identity: {' and '.join(self._identity)} "
                                                           f"{'is' if len(self._identity) == 1 else 'are'} empty or invalid")
        consent = None
        if self._consent is not None and "email" in attributes:
            consent, problems = self._consent.read(line, row, attributes["email"], attributes.get("phone_number"))
            self._warnings += problems
        return MappedProfile(line, identity, attributes, consent, self._fields_set(attributes) if self.tracked else 0)

    def _fields_set(self, attributes: dict[str, Any]) -> int:
        bits = 0
        for j, target in enumerate(self.tracked):
            group, dot, name = target.partition(".")
            if (name in (attributes.get(group) or {})) if dot else (target in attributes):
                bits |= 1 << j
        return bits

    def _identity_of(self, attributes: dict[str, Any]) -> str | None:
        """The key a row's profile is known by: a lower-cased email as it always was, or a
        phone or external id, prefixed with its kind (so no phone ever equals an email)."""
        for kind in self._identity:
            value = attributes.get(kind)
            if value:
                return value.lower() if kind == "email" else f"{kind}:{value}"
        return None


def _as_text(value: Any) -> str | None:
    """JSON Lines numbers (and Parquet dates) are fine as names or ids; lists, objects and
    booleans are not."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return str(value)


def _row_is_undecodable(row: Sequence[Any]) -> bool:
    return any(isinstance(v, str) and _UNDECODABLE.search(v) for v in row)
