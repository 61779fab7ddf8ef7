"""Azure Storage connection strings (``Key=Value;...``), parsed in one place."""

from __future__ import annotations


def connection_parts(connection_string: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in connection_string.split(";") if "=" in item)


def account_key(connection_string: str) -> dict[str, str] | None:
    """The shared-key credential in a connection string (Azurite's, locally), if it has one."""
    parts = connection_parts(connection_string)
    if "AccountName" in parts and "AccountKey" in parts:
        return {"account_name": parts["AccountName"], "account_key": parts["AccountKey"]}
    return None
