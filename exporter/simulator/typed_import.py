"""The simulator's quick way through a well-formed bulk import body: parsed and checked in C.

A benchmark sends the simulator a million profiles, and parsing them into dicts and then
walking each in Python cost more CPU than the exporter spent producing them: the stand-in,
not the exporter, set the pace. Here ``msgspec`` decodes the body straight into typed
structs, refusing unknown attribute names and wrong types as it goes, and the email and
phone rules run over a whole job at once with RE2. The quick way only ever *accepts*: a
body it cannot vouch for in full (any problem at all, a number where the exporter sends
strings, a profile near the size limit) returns ``None`` and takes the exact checks in
``validation.py``, which name every problem with its pointer. So the simulator stays
exactly as strict, and a test holds the two ways to the same verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Generic, Literal, TypeVar, cast

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from msgspec import UNSET, Struct, UnsetType

from exporter.klaviyo.limits import KLAVIYO_PROFILE_BYTES, MAX_PROFILES_PER_JOB
from exporter.mapping.columnar import PYTHON_SPACE

Text = str | None | UnsetType

# The rules of ``validation.py`` (Python ``re``, whose ``\s`` is ``str.isspace``), written
# for RE2 with that whitespace spelled out; both are anchored at the very end (no ``$``
# before a final newline).
_SPACE = "".join(f"\\x{{{ord(c):x}}}" for c in PYTHON_SPACE)
_NOT = f"[^@{_SPACE}]+"
EMAIL_RULE = f"^{_NOT}@{_NOT}\\.{_NOT}$"
E164_RULE = r"^\+[1-9][0-9]{7,14}$"


class Location(Struct, forbid_unknown_fields=True, gc=False):
    """Coordinates may also be numbers at Klaviyo; a number here takes the exact checks."""

    address1: Text = UNSET
    address2: Text = UNSET
    city: Text = UNSET
    country: Text = UNSET
    region: Text = UNSET
    zip: Text = UNSET
    timezone: Text = UNSET
    ip: Text = UNSET
    latitude: Text = UNSET
    longitude: Text = UNSET


class Attributes(Struct, forbid_unknown_fields=True, gc=False):
    """A profile's attributes as the simulator stores them: what was sent, ``UNSET`` where
    nothing was (a sent ``null`` stays ``None``). Properties are strings here, as the
    exporter sends them; a profile with other property values takes the exact checks."""

    email: Text = UNSET
    phone_number: Text = UNSET
    external_id: Text = UNSET
    _kx: Text = UNSET
    first_name: Text = UNSET
    last_name: Text = UNSET
    organization: Text = UNSET
    locale: Text = UNSET
    title: Text = UNSET
    image: Text = UNSET
    location: Location | None | UnsetType = UNSET
    properties: dict[str, str] | None | UnsetType = UNSET


class _Profile(Struct, forbid_unknown_fields=True, gc=False):
    type: Literal["profile"]
    attributes: Attributes


class _ListRef(Struct):
    type: Literal["list"]
    id: str


class _Lists(Struct):
    data: list[_ListRef]


class _Relationships(Struct):
    lists: _Lists


P = TypeVar("P")  # how a body's profiles are decoded: kept raw (sizes), or typed


class _Profiles(Struct, Generic[P]):
    data: list[P]


class _JobAttributes(Struct, Generic[P]):
    profiles: _Profiles[P]


class _Job(Struct, Generic[P]):
    type: Literal["profile-bulk-import-job"]
    attributes: _JobAttributes[P]
    relationships: _Relationships | None = None


class _Body(Struct, Generic[P], forbid_unknown_fields=True):
    data: _Job[P]


SentAttributes = Attributes | dict[str, Any]  # a job the exact checks passed holds dicts

# Two passes: profiles kept raw, so each one's size is measured before any is decoded;
# then all of them typed.
_SIZES = msgspec.json.Decoder(_Body[msgspec.Raw])
_TYPED = msgspec.json.Decoder(_Body[_Profile])


@dataclass
class ImportJob:
    profiles: list[SentAttributes]
    list_ids: list[str]


def decode_import_job(raw: bytes, request_rejects: frozenset[str] = frozenset()) -> ImportJob | None:
    """The job in ``raw`` if it is valid throughout; ``None`` if the exact checks must decide."""
    try:
        raws = _SIZES.decode(raw).data.attributes.profiles.data
        # Only strings and known names get through the typed decoder, so a profile
        # re-serialized compactly (as the exact check measures it) is never longer than sent.
        if not 0 < len(raws) <= MAX_PROFILES_PER_JOB or max(map(len, raws)) > KLAVIYO_PROFILE_BYTES:
            return None
        body = _TYPED.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    profiles = list(map(attrgetter("attributes"), body.data.attributes.profiles.data))
    emails = list(map(attrgetter("email"), profiles))
    if not all(emails):
        return None  # a profile without an email is checked the exact way
    phones = [phone for phone in map(attrgetter("phone_number"), profiles) if phone.__class__ is str]
    if not (_all_match(emails, EMAIL_RULE) and _all_match(phones, E164_RULE) and request_rejects.isdisjoint(emails)):
        return None
    lists = body.data.relationships.lists.data if body.data.relationships else []
    return ImportJob(cast(list[SentAttributes], profiles), [item.id for item in lists])


def _all_match(strings: list[Any], rule: str) -> bool:
    """Whether every string matches ``rule`` (RE2, one pass over the job's strings)."""
    return not strings or bool(pc.all(pc.match_substring_regex(pa.array(strings, pa.string()), rule)).as_py())
