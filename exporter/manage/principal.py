"""Who is calling: the principal App Service Authentication puts in ``X-MS-CLIENT-PRINCIPAL``.

The platform strips that header from incoming requests and sets its own only when
authentication is on (``WEBSITE_AUTH_ENABLED``), so the header is believed only then, or
in local mode, where a developer or a test plays the platform. Anywhere else it is a
forgery waiting to happen, and a request carrying one is refused, never half-trusted.

The header is untrusted bytes until parsed: its size, base64, JSON shape and every claim's
type are checked, and anything off is a ``401`` naming what was wrong (never echoing it).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from exporter.config import OBJECT_ID

HEADER = "X-MS-CLIENT-PRINCIPAL"
MAX_HEADER_BYTES = 16_384  # App Service's own limit on a request header is about this
MAX_CLAIMS = 500
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
GROUP_CLAIM = "groups"
NAME_CLAIMS = ("name", "preferred_username")


class NotSignedIn(Exception):
    """No principal to believe: ``str`` is the reason, for a ``401``."""


@dataclass(frozen=True)
class Principal:
    object_id: str  # Entra ID object id: what "who may use this connection" lists
    name: str  # display name or user name, for audit records only (never logged)
    roles: frozenset[str]
    groups: frozenset[str]

    def is_one_of(self, ids: set[str] | frozenset[str] | tuple[str, ...]) -> bool:
        wanted = {i.lower() for i in ids}
        return self.object_id.lower() in wanted or any(g.lower() in wanted for g in self.groups)


def platform_authenticates(environ: Mapping[str, str]) -> bool:
    """App Service sets ``WEBSITE_AUTH_ENABLED=True`` when its authentication module runs."""
    return environ.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true"


def caller(headers: Mapping[str, str], trusted: bool) -> Principal:
    """The signed-in caller, or ``NotSignedIn``. ``trusted``: the platform (or local mode)
    vouches for the header; otherwise a present header is refused as forged."""
    raw = _header(headers)
    if raw is None:
        raise NotSignedIn("sign in first: this route needs a user signed in through Microsoft Entra ID "
                          "(App Service Authentication); function keys do not reach it")
    if not trusted:
        raise NotSignedIn(f"a {HEADER} header was sent, but App Service Authentication is not on for this app "
                          "(WEBSITE_AUTH_ENABLED), so nothing vouches for it; the request is refused")
    return parse(raw)


def parse(raw: str) -> Principal:
    if len(raw) > MAX_HEADER_BYTES:
        raise NotSignedIn(f"the {HEADER} header is over {MAX_HEADER_BYTES} bytes")
    try:
        document = orjson.loads(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise NotSignedIn(f"the {HEADER} header is not base64-encoded JSON") from None
    claims = document.get("claims") if isinstance(document, dict) else None
    if not isinstance(claims, list) or len(claims) > MAX_CLAIMS:
        raise NotSignedIn(f"the {HEADER} header has no list of claims (or over {MAX_CLAIMS})")
    role_type = document.get("role_typ")
    role_types = set(ROLE_CLAIMS) | ({role_type} if isinstance(role_type, str) else set())
    values: dict[str, list[str]] = {}
    for claim in claims:
        if not (isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str)):
            raise NotSignedIn(f"the {HEADER} header holds a claim that is not a pair of strings 'typ' and 'val'")
        values.setdefault(claim["typ"], []).append(claim["val"])
    object_ids = values.get(OBJECT_ID_CLAIM, []) + values.get("oid", [])
    if len(set(object_ids)) != 1 or not OBJECT_ID.fullmatch(object_ids[0]):
        raise NotSignedIn(f"the {HEADER} header does not carry exactly one object id (the {OBJECT_ID_CLAIM} claim)")
    roles = frozenset(v for t in role_types for v in values.get(t, []))
    name = next((values[t][0] for t in NAME_CLAIMS if values.get(t)), "")
    return Principal(object_ids[0].lower(), name[:256], roles, frozenset(v.lower() for v in values.get(GROUP_CLAIM, [])))


def encode(object_id: str, roles: tuple[str, ...] = (), groups: tuple[str, ...] = (), name: str = "") -> str:
    """A header value as the platform writes it (local development, tests and the CLI's
    local mode play the platform's part with it)."""
    claims: list[dict[str, Any]] = [{"typ": OBJECT_ID_CLAIM, "val": object_id}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    claims += [{"typ": GROUP_CLAIM, "val": group} for group in groups]
    if name:
        claims.append({"typ": "name", "val": name})
    return base64.b64encode(orjson.dumps({"auth_typ": "aad", "claims": claims, "name_typ": "name",
                                          "role_typ": "roles"})).decode()


def _header(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == HEADER.lower():
            return value
    return None
