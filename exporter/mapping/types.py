"""Typed custom properties: numbers, booleans and dates reach Klaviyo as JSON numbers,
booleans and ISO 8601 strings, so its segment and flow conditions compare them as such.

A property's type comes from the mapping (``properties.spend:number``), else from the
source (a CDM attribute's ``dataType``); JSON Lines and Parquet values keep the type they
have. A value that does not parse as its type is an invalid field (dropped with a warning,
or its row rejected, as ``invalid_fields`` says).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Callable

from exporter.errors import ConfigError

TYPES = ("string", "number", "integer", "boolean", "date", "datetime")
# A CDM attribute's dataType -> ours (model.json and manifest.cdm.json spell them so).
CDM_TYPES = {"string": "string", "int16": "integer", "int32": "integer", "int64": "integer", "integer": "integer",
             "double": "number", "float": "number", "decimal": "number", "boolean": "boolean", "date": "date",
             "datetime": "datetime", "datetimeoffset": "datetime"}
_TRUE, _FALSE = frozenset({"true", "yes", "y", "1", "t"}), frozenset({"false", "no", "n", "0", "f"})
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class NotOfType(ValueError):
    pass


def split_type(target: str) -> tuple[str, str | None]:
    """``properties.spend:number`` -> (``properties.spend``, ``number``)."""
    name, sep, kind = target.rpartition(":")
    if not sep or not name.startswith("properties."):
        return target, None
    kind = kind.strip().lower()
    if kind not in TYPES:
        raise ConfigError(f"type {kind!r} of {name!r} is not one of {', '.join(TYPES)}")
    return name, kind


def to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise NotOfType
    if isinstance(value, (int, float, Decimal)):
        number = value
    elif isinstance(value, str) and _NUMBER.fullmatch(text := value.strip()):  # "12,50" is no number: which comma?
        number = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    else:
        raise NotOfType
    if isinstance(number, Decimal):
        number = int(number) if number == number.to_integral_value() else float(number)
    if isinstance(number, float) and not math.isfinite(number):
        raise NotOfType
    return number


def to_integer(value: Any) -> int:
    number = to_number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise NotOfType
        return int(number)
    return number


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise NotOfType


def to_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            pass
    raise NotOfType


def to_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise NotOfType from None
    else:
        raise NotOfType
    stamp = stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return stamp.isoformat(timespec="seconds")


def to_string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise NotOfType
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


CONVERTERS: dict[str, Callable[[Any], Any]] = {"string": to_string, "number": to_number, "integer": to_integer,
                                                "boolean": to_boolean, "date": to_date, "datetime": to_datetime}
