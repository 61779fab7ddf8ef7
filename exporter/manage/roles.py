"""What each app role may do. Two roles, as the product we model splits the work:

- ``Exporter.Admin`` sets up connections (who may use them, the key, the privacy
  agreement) and may do everything, including run overrides that widen removals;
- ``Exporter.Contributor`` adds, changes and runs exports on connections whose ``users``
  name them or one of their groups, and reads those exports' runs.

A connection's ``users`` empty means admins only, as the product's default.
"""

from __future__ import annotations

from exporter.config import Connection
from exporter.manage.principal import Principal

ADMIN = "Exporter.Admin"
CONTRIBUTOR = "Exporter.Contributor"


class Forbidden(Exception):
    """Signed in, but not allowed: ``str`` is the reason, for a ``403``."""


def is_admin(principal: Principal) -> bool:
    return ADMIN in principal.roles


def require_a_role(principal: Principal) -> None:
    if not principal.roles & {ADMIN, CONTRIBUTOR}:
        raise Forbidden(f"your account has neither app role {ADMIN} nor {CONTRIBUTOR}; ask an administrator to "
                        "assign one in Microsoft Entra ID (Enterprise applications > Users and groups)")


def require_admin(principal: Principal, action: str) -> None:
    require_a_role(principal)
    if not is_admin(principal):
        raise Forbidden(f"{action} needs the {ADMIN} role; you have {CONTRIBUTOR}")


def may_use(principal: Principal, connection: Connection) -> bool:
    if is_admin(principal):
        return True
    return CONTRIBUTOR in principal.roles and principal.is_one_of(connection.users)


def require_use(principal: Principal, connection: Connection) -> None:
    require_a_role(principal)
    if not may_use(principal, connection):
        raise Forbidden(f"you may not use connection {connection.name!r}: an administrator chooses who may "
                        "(its 'users'); ask one to add you or one of your groups")
