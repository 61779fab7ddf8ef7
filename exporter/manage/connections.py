"""Connections, as an administrator sets them up: a display name, who may use it, the
Klaviyo key, and the data-privacy agreement, in the product's order. Admins only.

The key is checked with a read-only Klaviyo call before anything is stored; a refused key
saves nothing. Accepted, it goes to the vault as a new secret version and the connection
records which, with the Klaviyo account it belongs to when the key may say so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from exporter.config import OBJECT_ID
from exporter.errors import KlaviyoAuthError, KlaviyoRequestError, TransientError
from exporter.manage.backend import Backend, Conflict, NotFoundItem
from exporter.manage.document import item_etag
from exporter.manage.editing import Invalid, Preconditions, Problem, expected_etag
from exporter.manage.keys import API_KEY, CONNECTION_NAME, secret_name
from exporter.manage.klaviyo_checks import KeyRefused, account_of
from exporter.manage.principal import Principal
from exporter.manage.roles import require_admin

PRIVACY_NOTICE = (
    "Data privacy: exporting a segment to Klaviyo sends its customers' data (email addresses, phone numbers, names "
    "and every column you map) outside this app and your Azure compliance boundary, to Klaviyo, a third party that "
    "processes it under its own terms. By agreeing you confirm that your organization may share this data with "
    "Klaviyo and that doing so meets your privacy and consent obligations.")
FIELDS = {"display_name", "users", "privacy_acknowledged", "api_key"}
MAX_USERS = 200


def view(item: dict[str, Any]) -> dict[str, Any]:
    """A connection as people see it: where its key is, never the key."""
    key = ("stored" if item.get("key_vault_secret") else
           f"environment variable {item['env']}" if item.get("env") else "missing")
    shown = {"name": item.get("name"), "display_name": item.get("display_name") or item.get("name"),
             "users": item.get("users", []), "key": key}
    for extra in ("privacy", "klaviyo_account", "key_updated_at"):
        if extra in item:
            shown[extra] = item[extra]
    return shown


class Connections:
    def __init__(self, backend: Backend):
        self._backend = backend

    async def listing(self, principal: Principal) -> list[dict[str, Any]]:
        require_admin(principal, "listing connections")
        snapshot = await self._backend.editor.snapshot()
        return [view(i) | {"etag": item_etag(i)} for i in snapshot.document["connections"] if isinstance(i, dict)]

    async def get(self, principal: Principal, name: str) -> tuple[dict[str, Any], str]:
        require_admin(principal, "reading a connection")
        item = (await self._backend.editor.snapshot()).item("connections", name)
        if item is None:
            raise NotFoundItem(f"no connection named {name!r}")
        return view(item), item_etag(item)

    async def put(self, principal: Principal, name: str, body: dict[str, Any],
                  wanted: Preconditions) -> tuple[bool, dict[str, Any], str]:
        """Create or change a connection; returns (created, what is stored, its ETag)."""
        require_admin(principal, "setting up a connection")
        if not CONNECTION_NAME.fullmatch(name):
            raise Invalid([Problem("name", "a connection's name is 1-63 letters, digits or '-', starting with a "
                                           "letter or digit (it names the key's secret in Key Vault)")])
        snapshot = await self._backend.editor.snapshot()
        current = snapshot.item("connections", name)
        expected = expected_etag(current, wanted, f"connection {name!r}")
        _check_fields(body, creating=current is None)
        item = dict(current or {"name": name})
        item["display_name"] = body.get("display_name", item.get("display_name") or name).strip()
        item["users"] = sorted({u.lower() for u in body.get("users", item.get("users", []))})
        now = datetime.now(UTC).isoformat(timespec="seconds")
        if body.get("privacy_acknowledged") is True:
            item["privacy"] = {"acknowledged_by": principal.object_id, "acknowledged_by_name": principal.name,
                               "acknowledged_at": now, "notice": PRIVACY_NOTICE}
        if "api_key" in body:
            item.update(await self._store_key(name, body["api_key"].strip()))
            item["key_updated_at"] = now
            item.pop("env", None)
        await self._backend.editor.commit("connections", name, expected, item)
        await self._backend.audit.record(principal, "create" if current is None else "update", "connections", name,
                                         current, item)
        return current is None, view(item), item_etag(item)

    async def delete(self, principal: Principal, name: str, wanted: Preconditions) -> None:
        require_admin(principal, "deleting a connection")
        snapshot = await self._backend.editor.snapshot()
        current = snapshot.item("connections", name)
        if current is None:
            raise NotFoundItem(f"no connection named {name!r}")
        expected = expected_etag(current, wanted, f"connection {name!r}")
        users = sorted(e.get("name", "?") for e in snapshot.document["exports"]
                       if isinstance(e, dict) and e.get("connection") == name)
        if users:
            raise Conflict(f"connection {name!r} is used by export(s) {', '.join(map(repr, users))}; "
                           "delete them or move them to another connection first")
        await self._backend.editor.commit("connections", name, expected, None)
        await self._backend.audit.record(principal, "delete", "connections", name, current, None)

    async def _store_key(self, name: str, key: str) -> dict[str, Any]:
        try:
            account = await account_of(self._backend.klaviyo_url, key)
        except KeyRefused:
            raise Invalid([Problem("api_key", "Klaviyo refused the key (401): check that it is a private API key "
                                              "(pk_...) of the right account; nothing was saved")]) from None
        except KlaviyoAuthError as exc:
            raise Invalid([Problem("api_key", f"{exc}; nothing was saved")]) from None
        except KlaviyoRequestError as exc:
            raise TransientError(f"Klaviyo could not check the key ({exc}); nothing was saved, try again") from None
        secret = secret_name(name)
        version = await self._backend.key_writer().store(secret, key)
        stored: dict[str, Any] = {"key_vault_secret": secret, "key_version": version}
        if account is not None:
            stored["klaviyo_account"] = account
        return stored


def _check_fields(body: dict[str, Any], creating: bool) -> None:
    problems: list[Problem] = []
    for field in sorted(set(body) - FIELDS):
        problems.append(Problem(field, f"{field!r} is not something a request may set on a connection (only "
                                       f"{', '.join(sorted(FIELDS))}); the app records the rest itself"))
    name = body.get("display_name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 100
                             or not name.isprintable()):
        problems.append(Problem("display_name", "a display name is 1-100 printable characters"))
    users = body.get("users", [])
    if not isinstance(users, list) or len(users) > MAX_USERS or \
            not all(isinstance(u, str) and OBJECT_ID.fullmatch(u) for u in users):
        problems.append(Problem("users", f"'users' lists up to {MAX_USERS} Microsoft Entra object ids of users or "
                                         "groups who may use the connection (empty: administrators only)"))
    agreed = body.get("privacy_acknowledged")
    if agreed is not True and (creating or agreed is not None):
        problems.append(Problem("privacy_acknowledged", "set 'privacy_acknowledged' to true to agree: "
                                + PRIVACY_NOTICE))
    key = body.get("api_key")
    if key is None and creating:
        problems.append(Problem("api_key", "a new connection needs its Klaviyo private API key ('api_key')"))
    elif key is not None and not (isinstance(key, str) and API_KEY.fullmatch(key.strip())):
        problems.append(Problem("api_key", "'api_key' must be a Klaviyo private API key: 8-256 characters, no spaces"))
    if problems:
        raise Invalid(problems)
