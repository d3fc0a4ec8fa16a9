"""What each route needs, and who has it: checked once per request, before the handler (core/deps.py).

A route's permission is declared in ROUTE_PERMISSIONS or, for a route not named there, follows from how it is
written: no principal -> PUBLIC; `require_reviewer` -> REVIEW; `require_account_manager` -> ACCOUNT_MANAGEMENT
(MONEY under /finance/); any other GET -> READ; any other method -> OPERATE, the advertiser's own edits. So a new
route written with the usual dependencies falls into a least-privilege permission without being listed here.

Platform staff are least-privilege too: a reviewer reviews and reads, an account manager handles money and
accounts. Neither passes OPERATE unless an admin granted "operate on behalf" (admins always may); the principal
is then marked `on_behalf` and the operation log records each write as on behalf of the account.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from adstack.accounts.models import AccountRole, KeyScope, Principal, Role
from adstack.core.errors import FieldError, Forbidden


class Permission(StrEnum):
    PUBLIC = "public"  # no sign-in
    SELF = "self"  # the signed-in user's own sign-in: password, sessions, sign-out (no API key)
    API_KEYS = "api_keys"  # making and revoking API keys: a signed-in session only
    READ = "read"  # reading what the principal may see (tenancy narrows it further)
    PLATFORM_READ = "platform_read"  # reading platform-wide data: staff only
    OPERATE = "operate"  # editing an account's campaigns, ads, apps, audiences, media, connectors
    ACCOUNT = "account"  # editing an account's details and documents, submitting it, creating sub-accounts
    FINANCE = "finance"  # an account's own money movements: top-up requests, agency transfers
    MANAGE_USERS = "manage_users"  # an account's users and invitations
    REVIEW = "review"  # deciding on accounts, ad groups and creatives
    ACCOUNT_MANAGEMENT = "account_management"  # the platform's accounts and catalogues
    MONEY = "money"  # the platform's money: top-ups, credit lines, refunds
    ADMIN = "admin"  # granting platform powers


# The API-key scope each permission needs; None: keys are refused (a signed-in session only).
KEY_SCOPE: dict[Permission, KeyScope | None] = {
    Permission.PUBLIC: KeyScope.READ,
    Permission.SELF: None,
    Permission.API_KEYS: None,
    Permission.READ: KeyScope.READ,
    Permission.PLATFORM_READ: KeyScope.READ,
    Permission.OPERATE: KeyScope.WRITE,
    Permission.ACCOUNT: KeyScope.WRITE,
    Permission.FINANCE: KeyScope.FINANCE,
    Permission.MANAGE_USERS: None,
    Permission.REVIEW: KeyScope.WRITE,
    Permission.ACCOUNT_MANAGEMENT: KeyScope.WRITE,
    Permission.MONEY: KeyScope.FINANCE,
    Permission.ADMIN: None,
}

# Which platform roles hold each permission (OPERATE also by the on-behalf grant).
PLATFORM_HOLDERS: dict[Permission, frozenset[str]] = {
    Permission.PUBLIC: frozenset({Role.ADMIN, Role.REVIEWER, Role.ACCOUNT_MANAGER}),
    Permission.SELF: frozenset({Role.ADMIN, Role.REVIEWER, Role.ACCOUNT_MANAGER}),
    Permission.API_KEYS: frozenset({Role.ADMIN, Role.REVIEWER, Role.ACCOUNT_MANAGER}),
    Permission.READ: frozenset({Role.ADMIN, Role.REVIEWER, Role.ACCOUNT_MANAGER}),
    Permission.PLATFORM_READ: frozenset({Role.ADMIN, Role.REVIEWER, Role.ACCOUNT_MANAGER}),
    Permission.OPERATE: frozenset({Role.ADMIN}),
    Permission.ACCOUNT: frozenset({Role.ADMIN, Role.ACCOUNT_MANAGER}),
    Permission.FINANCE: frozenset({Role.ADMIN, Role.ACCOUNT_MANAGER}),
    Permission.MANAGE_USERS: frozenset({Role.ADMIN, Role.ACCOUNT_MANAGER}),
    Permission.REVIEW: frozenset({Role.ADMIN, Role.REVIEWER}),
    Permission.ACCOUNT_MANAGEMENT: frozenset({Role.ADMIN, Role.ACCOUNT_MANAGER}),
    Permission.MONEY: frozenset({Role.ADMIN, Role.ACCOUNT_MANAGER}),
    Permission.ADMIN: frozenset({Role.ADMIN}),
}

# Which account roles hold each permission (an agency's users hold them in its sub-accounts too).
TENANT_HOLDERS: dict[Permission, frozenset[str]] = {
    Permission.PUBLIC: frozenset(AccountRole),
    Permission.SELF: frozenset(AccountRole),
    Permission.API_KEYS: frozenset(AccountRole),
    Permission.READ: frozenset(AccountRole),
    Permission.PLATFORM_READ: frozenset(),
    Permission.OPERATE: frozenset({AccountRole.OWNER, AccountRole.OPERATOR}),
    Permission.ACCOUNT: frozenset({AccountRole.OWNER}),
    Permission.FINANCE: frozenset({AccountRole.OWNER}),
    Permission.MANAGE_USERS: frozenset({AccountRole.OWNER}),
    Permission.REVIEW: frozenset(),
    Permission.ACCOUNT_MANAGEMENT: frozenset(),
    Permission.MONEY: frozenset(),
    Permission.ADMIN: frozenset(),
}

API = "/api/v1"

# Routes whose handlers check roles in their services, or that read although they POST: declared here so the
# gate applies the same rule first. Keyed "METHOD path".
ROUTE_PERMISSIONS: dict[str, Permission] = {
    # sign-in
    f"POST {API}/auth/logout": Permission.SELF,
    f"POST {API}/auth/password": Permission.SELF,
    f"POST {API}/auth/verify-email/resend": Permission.SELF,
    f"GET {API}/auth/sessions": Permission.SELF,
    f"DELETE {API}/auth/sessions/{{session_id}}": Permission.SELF,
    f"GET {API}/auth/api-keys": Permission.API_KEYS,
    f"POST {API}/auth/api-keys": Permission.API_KEYS,
    f"DELETE {API}/auth/api-keys/{{key_id}}": Permission.API_KEYS,
    # users and invitations
    f"GET {API}/users": Permission.READ,
    f"POST {API}/users/{{user_id}}/activate": Permission.MANAGE_USERS,
    f"POST {API}/users/{{user_id}}/deactivate": Permission.MANAGE_USERS,
    f"PUT {API}/users/{{user_id}}/account-role": Permission.MANAGE_USERS,
    f"POST {API}/users/{{user_id}}/verify-email": Permission.ACCOUNT_MANAGEMENT,
    f"PUT {API}/users/{{user_id}}/on-behalf": Permission.ADMIN,
    f"GET {API}/invitations": Permission.MANAGE_USERS,
    f"POST {API}/invitations": Permission.MANAGE_USERS,
    f"DELETE {API}/invitations/{{invitation_id}}": Permission.MANAGE_USERS,
    # accounts
    f"POST {API}/accounts": Permission.ACCOUNT,
    f"PATCH {API}/accounts/{{account_id}}": Permission.ACCOUNT,
    f"POST {API}/accounts/{{account_id}}/submit": Permission.ACCOUNT,
    f"POST {API}/accounts/{{account_id}}/documents": Permission.ACCOUNT,
    f"PUT {API}/accounts/{{account_id}}/documents/{{document_id}}": Permission.ACCOUNT,
    # review decisions made in the domains' own services
    f"POST {API}/accounts/{{account_id}}/review": Permission.REVIEW,
    f"POST {API}/ad-groups/{{ad_group_id}}/review": Permission.REVIEW,
    f"POST {API}/creatives/{{creative_id}}/review": Permission.REVIEW,
    # POSTs that compute and change nothing
    f"POST {API}/ad-groups/estimate": Permission.READ,
    f"POST {API}/creatives/preview": Permission.READ,
    f"POST {API}/reports/jobs": Permission.READ,
    # the account's own money
    f"POST {API}/finance/top-up-requests": Permission.FINANCE,
    f"POST {API}/finance/transfers": Permission.FINANCE,
    # platform catalogues kept by account managers, checked in their services
    f"POST {API}/audiences/regions": Permission.ACCOUNT_MANAGEMENT,
    f"DELETE {API}/audiences/regions/{{region_id}}": Permission.ACCOUNT_MANAGEMENT,
    f"PUT {API}/audiences/package-categories": Permission.ACCOUNT_MANAGEMENT,
    f"DELETE {API}/audiences/package-categories/{{row_id}}": Permission.ACCOUNT_MANAGEMENT,
    f"PUT {API}/audiences/portrait-tags": Permission.ACCOUNT_MANAGEMENT,
    # an advertiser's own partners' verdicts against ours, over the conversions it can see (tenancy narrows it)
    f"GET {API}/attribution/verdict-agreement": Permission.READ,
    # notifications: marking one's own read changes nothing of the account's
    f"POST {API}/notifications/{{notification_id}}/read": Permission.READ,
    f"POST {API}/notifications/read-all": Permission.READ,
    # webhook endpoints send the account's events to an outside address with a signing secret: owners
    f"POST {API}/webhooks": Permission.ACCOUNT,
    f"DELETE {API}/webhooks/{{endpoint_id}}": Permission.ACCOUNT,
    # platform operations
    f"POST {API}/postbacks/process": Permission.ACCOUNT_MANAGEMENT,
    f"GET {API}/pipeline/status": Permission.PLATFORM_READ,
    f"GET {API}/postbacks/rejected": Permission.PLATFORM_READ,
    f"GET {API}/tracking/invalid": Permission.PLATFORM_READ,
}


# ---------- the route table ----------


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, through included routers (which FastAPI keeps as wrappers in app.routes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def dependency_calls(dependant: Any) -> set[Any]:
    """Every dependency callable a route (or dependency) runs, however deep."""
    found: set[Any] = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= dependency_calls(sub)
    return found


def route_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def inferred_permission(route: APIRoute, method: str) -> Permission:
    from adstack.core import deps  # the dependencies this reads are defined there

    calls = dependency_calls(route.dependant)
    if deps.get_principal not in calls:
        return Permission.PUBLIC
    if deps.require_reviewer in calls:
        return Permission.REVIEW
    if deps.require_account_manager in calls:
        return Permission.MONEY if route.path.startswith(f"{API}/finance/") else Permission.ACCOUNT_MANAGEMENT
    return Permission.READ if method.upper() in ("GET", "HEAD") else Permission.OPERATE


_known: dict[tuple[int, str], tuple[APIRoute, Permission]] = {}


def permission_of(route: APIRoute, method: str) -> Permission:
    key = (id(route), method.upper())
    known = _known.get(key)
    if known is not None and known[0] is route:  # the route is kept, so its id is not reused
        return known[1]
    declared = ROUTE_PERMISSIONS.get(route_key(method, route.path))
    permission = declared if declared is not None else inferred_permission(route, method)
    _known[key] = (route, permission)
    return permission


# ---------- the check ----------


def _who(principal: Principal) -> str:
    return principal.role if principal.is_platform else f"{principal.role} {principal.account_role}"


def authorize(principal: Principal, permission: Permission) -> Principal:
    """The principal, marked `on_behalf` when it passes OPERATE as platform staff; Forbidden names what is
    missing: the role, or the API key's scope."""
    if principal.is_platform:
        holds = principal.role in PLATFORM_HOLDERS[permission]
        if permission == Permission.OPERATE and principal.can_operate_on_behalf:
            holds = True
    else:
        holds = principal.account_role in TENANT_HOLDERS[permission]
    if not holds:
        needed = sorted(PLATFORM_HOLDERS[permission] | {f"account {r}" for r in TENANT_HOLDERS[permission]})
        if permission == Permission.OPERATE:
            needed.append("platform staff granted operate-on-behalf")
        raise Forbidden(f"{permission.value} is not allowed to a {_who(principal)}", code="role_forbidden",
                        fields=[FieldError(field="role", rule=f"permission:{permission.value}", limit=needed,
                                           actual=_who(principal))])
    if principal.scopes is not None:
        scope = KEY_SCOPE[permission]
        if scope is None:
            raise Forbidden(f"API keys cannot do this ({permission.value}); sign in with a password",
                            code="session_required",
                            fields=[FieldError(field="authorization", rule="signed_in_session", limit="session",
                                               actual="api_key")])
        # Any key reads: "write" and "finance" would be of little use to a client that cannot see the result.
        if scope not in principal.scopes and not (scope == KeyScope.READ and principal.scopes):
            raise Forbidden(f"this API key lacks the {scope.value} scope", code="missing_scope",
                            fields=[FieldError(field="scope", rule="key_scope", limit=scope.value,
                                               actual=sorted(principal.scopes))])
    if permission == Permission.OPERATE and principal.is_platform:
        return dataclasses.replace(principal, on_behalf=True)
    return principal
