"""Users' roles, apart from the models so the command line can name them without loading the database layer."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # platform admin with every power
    REVIEWER = "reviewer"  # platform admin who reviews accounts and ads
    ACCOUNT_MANAGER = "account_manager"  # platform admin who manages accounts and money
    AGENCY = "agency"
    ADVERTISER = "advertiser"


class PlatformRole(StrEnum):
    """The roles of platform staff: the choices of `adstack admin create --role`."""

    ADMIN = Role.ADMIN.value
    REVIEWER = Role.REVIEWER.value
    ACCOUNT_MANAGER = Role.ACCOUNT_MANAGER.value


PLATFORM_ROLES = frozenset(Role(role.value) for role in PlatformRole)
