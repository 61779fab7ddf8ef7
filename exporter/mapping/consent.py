"""Consent columns: which rows may be subscribed, on which channel, as of when.

An export maps, per channel (``email``, ``sms``), a column whose value says the person
consented and the column holding when. Truthy spellings (any case, trimmed): ``true``,
``yes``, ``y``, ``1``, ``subscribed``, ``opted_in``, ``opt-in``, ``consented``. Anything else,
empty included, is no consent: the row joins the list as today, never subscribed and never
unsubscribed. A consenting row needs a time in the past (ISO 8601; a date alone is midnight
UTC; a time without a zone is UTC); a missing, unreadable or future time, or SMS consent
without a valid phone, subscribes nobody on that channel and is listed with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, Sequence

from exporter.errors import ConfigError
from exporter.rejects import Reject
from exporter.timestamps import parse_iso

CHANNELS = ("email", "sms")
TRUTHY = frozenset({"true", "yes", "y", "1", "subscribed", "opted_in", "opt-in", "opted-in", "consented"})


@dataclass(frozen=True)
class ConsentColumns:
    column: str  # truthy: consented
    consented_at: str  # when


@dataclass(frozen=True)
class ConsentMapping:
    channels: dict[str, ConsentColumns]

    @property
    def columns(self) -> list[str]:
        return [c for columns in self.channels.values() for c in (columns.column, columns.consented_at)]

    @classmethod
    def from_document(cls, value: Any) -> ConsentMapping:
        """``{"email": {"column": C, "consented_at": T}, "sms": {...}}`` (an export's "consent")."""
        if not isinstance(value, dict) or not value or set(value) - set(CHANNELS):
            raise ConfigError("'consent' maps \"email\" and/or \"sms\" to {\"column\": ..., \"consented_at\": ...}")
        channels = {}
        for channel, columns in value.items():
            if not (isinstance(columns, dict) and set(columns) == {"column", "consented_at"}
                    and all(isinstance(c, str) and c.strip() for c in columns.values())):
                raise ConfigError(f"consent for {channel!r} needs \"column\" and \"consented_at\", each a column name")
            channels[channel] = ConsentColumns(columns["column"].strip(), columns["consented_at"].strip())
        return cls(channels)

    @classmethod
    def from_flags(cls, flags: Sequence[str]) -> ConsentMapping | None:
        """The CLI's ``--consent CHANNEL=COLUMN,CONSENTED_AT_COLUMN`` (repeatable)."""
        document: dict[str, dict[str, str]] = {}
        for flag in flags:
            channel, sep, columns = flag.partition("=")
            column, comma, at = columns.partition(",")
            if not sep or not comma or channel.strip() in document:
                raise ConfigError(f"--consent expects CHANNEL=COLUMN,CONSENTED_AT_COLUMN once a channel, got {flag!r}")
            document[channel.strip()] = {"column": column, "consented_at": at}
        return cls.from_document(document) if document else None


class Consent(NamedTuple):
    """One row's consent to subscribe: the channels and when, as ISO 8601 UTC times."""

    line: int
    email: str
    phone: str | None
    at: dict[str, str]  # channel -> consented_at


class ConsentReader:
    """Compiled against the header: reads a row's consent, or the reasons it has none."""

    def __init__(self, mapping: ConsentMapping, index: dict[str, int], now: datetime | None = None):
        self._channels = [(channel, index[c.column], index[c.consented_at], c.column, c.consented_at)
                          for channel, c in mapping.channels.items()]
        self._now = now or datetime.now(UTC)

    def read(self, line: int, row: Sequence[Any], email: str, phone: str | None) -> tuple[Consent | None, list[Reject]]:
        at: dict[str, str] = {}
        problems: list[Reject] = []
        for channel, flag_at, time_at, flag_column, time_column in self._channels:
            flag = row[flag_at]
            if not _truthy(flag):
                continue
            stamp = _time(row[time_at])
            if stamp is None:
                problems.append(Reject(line, time_column, f"{channel} consent without a readable {time_column} "
                                                          "(ISO 8601); not subscribed"))
            elif stamp > self._now:
                problems.append(Reject(line, time_column, f"{channel} consent dated in the future; not subscribed"))
            elif channel == "sms" and phone is None:
                problems.append(Reject(line, flag_column, "sms consent without a valid phone number; not subscribed"))
            else:
                at[channel] = stamp.isoformat(timespec="seconds")
        return (Consent(line, email, phone, at) if at else None), problems


def _truthy(value: Any) -> bool:
    if value is True:
        return True
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip().lower() in TRUTHY


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime(value.year, value.month, value.day)
    else:
        return parse_iso(value)
    return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
