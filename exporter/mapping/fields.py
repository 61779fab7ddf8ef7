"""Which Klaviyo profile attributes a segment column may be mapped to.

The user-facing model is "column -> profile field"; this module turns that into a typed
``FieldMapping`` and catches misspelled targets before a single row is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from exporter.errors import ConfigError

if TYPE_CHECKING:
    from exporter.mapping.consent import ConsentMapping

TOP_LEVEL = frozenset(
    {"phone_number", "external_id", "first_name", "last_name", "organization", "title", "locale", "image"}
)
LOCATION = frozenset(
    {"address1", "address2", "city", "country", "region", "zip", "timezone", "latitude", "longitude", "ip"}
)
PROPERTY_PREFIX = "properties."
LOCATION_PREFIX = "location."


def canonical_target(target: str) -> str:
    """Spell a target the one way the mapper understands, or explain what is allowed."""
    name = target.strip()
    if name.startswith(PROPERTY_PREFIX):
        if len(name) == len(PROPERTY_PREFIX):
            raise ConfigError(f"mapping target {target!r} needs a property name after 'properties.'")
        return name
    if name.startswith(LOCATION_PREFIX):
        name = name[len(LOCATION_PREFIX):]
    if name in LOCATION:
        return LOCATION_PREFIX + name
    if name in TOP_LEVEL:
        return name
    if name == "email":
        raise ConfigError("email is mapped with --email-column (or 'email_column' in config), not --map")
    allowed = ", ".join(sorted(TOP_LEVEL | {LOCATION_PREFIX + n for n in LOCATION}))
    raise ConfigError(f"unknown Klaviyo profile field {target!r}; use one of {allowed}, or properties.NAME")


def typed_target(target: str) -> tuple[str, str | None]:
    """A target and the type it names, if any: ``properties.spend:number``."""
    from exporter.mapping.types import split_type

    name, kind = split_type(target.strip())
    return canonical_target(name), kind


INVALID_FIELD_POLICIES = ("drop", "reject")
IDENTITIES = ("email", "phone_number", "external_id")  # what Klaviyo identifies a profile by


@dataclass(frozen=True)
class FieldMapping:
    """Segment column names for the email (required) and any other profile fields, and what
    to do with a row whose optional field is invalid: ``drop`` the field (the person still
    joins the list; the rejects file lists the problem) or ``reject`` the row."""

    email_column: str
    fields: dict[str, str] = field(default_factory=dict)  # target field -> source column
    phone_region: str | None = None  # default region for phones written in a local format
    invalid_fields: str = "drop"
    consent: ConsentMapping | None = None  # consent columns: who may be subscribed, on which channel, when
    types: dict[str, str] = field(default_factory=dict)  # custom property -> its type (``types.TYPES``)
    # What identifies a row's profile: the first of these the row has (valid). Email by
    # default, as the product we model requires; de-duplication, the snapshot, delta and mirror
    # mode key on the identity each row used.
    identity: tuple[str, ...] = ("email",)

    def __post_init__(self) -> None:
        if not self.identity or len(set(self.identity)) != len(self.identity) \
                or any(kind not in IDENTITIES for kind in self.identity):
            raise ConfigError(f"identity is one or more of {', '.join(IDENTITIES)}, in order, each once; "
                              f"got {', '.join(self.identity) or 'none'}")
        if not self.email_column.strip() and "email" in self.identity:
            raise ConfigError("the email column name is empty")
        for kind in self.identity:
            if kind != "email" and kind not in self.fields:
                raise ConfigError(f"identity {kind} needs a column mapped to {kind}")
        if self.invalid_fields not in INVALID_FIELD_POLICIES:
            raise ConfigError(f"an invalid optional field may be 'drop'ped or 'reject'ed, not {self.invalid_fields!r}")
        if self.phone_region is not None:
            from exporter.mapping.validate import is_phone_region

            if not is_phone_region(self.phone_region):
                raise ConfigError(f"phone region {self.phone_region!r} is not a two-letter region phonenumbers "
                                  "knows (e.g. GB, US, DE)")

    @classmethod
    def from_pairs(cls, email_column: str, pairs: Iterable[str], phone_region: str | None = None,
                   invalid_fields: str = "drop", identity: tuple[str, ...] = ("email",)) -> FieldMapping:
        """Parse ``COL=FIELD`` pairs as the CLI's ``--map`` gives them."""
        fields: dict[str, str] = {}
        types: dict[str, str] = {}
        for pair in pairs:
            column, sep, target = pair.partition("=")
            if not sep or not column.strip() or not target.strip():
                raise ConfigError(f"--map expects COL=FIELD, got {pair!r}")
            canonical, kind = typed_target(target)
            if canonical in fields:
                raise ConfigError(f"field {canonical} is mapped twice (from {fields[canonical]!r} and {column!r})")
            fields[canonical] = column.strip()
            if kind is not None:
                types[canonical] = kind
        return cls(email_column.strip(), fields, phone_region, invalid_fields, types=types, identity=identity)

    @property
    def columns(self) -> list[str]:
        """Every source column the mapping reads, email first (consent columns last)."""
        email = [self.email_column] if self.email_column.strip() else []
        return [*email, *self.fields.values(), *(self.consent.columns if self.consent else [])]
