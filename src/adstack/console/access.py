"""What each console route needs: the same permissions as the API (accounts/permissions.py), checked by the
same `permissions.authorize` when a page's visitor is resolved (web.require_user), before the handler runs.

A route's permission is declared in CONSOLE_PERMISSIONS or, for a route not named there, follows from how it is
written: no signed-in visitor (VisitorDep only) -> PUBLIC; `require_reviewer` -> REVIEW; `require_account_manager`
-> ACCOUNT_MANAGEMENT (MONEY for money pages); `require_platform` -> PLATFORM_READ; any other GET -> READ; any other
method -> OPERATE. So a new form posted through the console edits an advertiser's objects only as its operators,
owners, admins and staff granted "operate on behalf" may, and the latter's writes are logged as on behalf.
"""

from __future__ import annotations

from functools import lru_cache

from fastapi.routing import APIRoute

from adstack.accounts.permissions import Permission, api_routes, dependency_calls

# Keyed "METHOD path" with the path as the page modules declare it: below /console, where the console mounts every
# page router (FastAPI hands the handler the page's own route, whose path has no prefix).
CONSOLE_PERMISSIONS: dict[str, Permission] = {
    # pages that show the forms which edit campaigns, ad groups, creatives and audiences
    "GET /ads/new": Permission.OPERATE,
    "GET /ads/campaigns/{campaign_id}/edit": Permission.OPERATE,
    "GET /ads/campaigns/{campaign_id}/ad-groups/new": Permission.OPERATE,
    "GET /ads/ad-groups/{ad_group_id}/edit": Permission.OPERATE,
    "GET /ads/ad-groups/{ad_group_id}/creatives/new": Permission.OPERATE,
    "GET /ads/creatives/{creative_id}/edit": Permission.OPERATE,
    "GET /ads/{level}/{object_id}/quick-edit": Permission.OPERATE,
    "GET /audiences/labels/new": Permission.OPERATE,
    "GET /audiences/{audience_id}/edit": Permission.OPERATE,
    # POSTs that compute and change nothing (the API's estimate and preview are READ too)
    "POST /ads/estimate": Permission.READ,
    "POST /ads/ad-groups/{ad_group_id}/creatives/form": Permission.READ,
    "POST /ads/ad-groups/{ad_group_id}/preview": Permission.READ,
    "POST /reports/jobs": Permission.READ,
    "POST /notifications/{notification_id}/read": Permission.READ,
    "POST /notifications/read-all": Permission.READ,
    # the signed-in user's own sign-in and keys
    "POST /security/password": Permission.SELF,
    "POST /security/sessions/{session_id}/revoke": Permission.SELF,
    "POST /security/verify-email": Permission.SELF,
    "GET /security": Permission.SELF,
    "POST /api-keys": Permission.API_KEYS,
    "POST /api-keys/{key_id}/revoke": Permission.API_KEYS,
    # the account's details and documents
    "POST /accounts/{account_id}/edit": Permission.ACCOUNT,
    "POST /accounts/{account_id}/submit": Permission.ACCOUNT,
    "POST /accounts/{account_id}/documents": Permission.ACCOUNT,
    "POST /accounts/{account_id}/sub-accounts": Permission.ACCOUNT,
    # the account's users and invitations
    "POST /users/invite": Permission.MANAGE_USERS,
    "POST /users/{user_id}/role": Permission.MANAGE_USERS,
    "POST /users/{user_id}/deactivate": Permission.MANAGE_USERS,
    "POST /users/{user_id}/activate": Permission.MANAGE_USERS,
    "POST /invitations/{invitation_id}/revoke": Permission.MANAGE_USERS,
    # the account's own money, and the platform's
    "POST /finance/top-up-requests": Permission.FINANCE,
    "POST /finance/transfers": Permission.FINANCE,
    "POST /admin/top-ups/{request_id}": Permission.MONEY,
    # the platform's catalogues, kept by account managers (as the API's publishers and ad spaces)
    "POST /admin/inventory/publishers": Permission.ACCOUNT_MANAGEMENT,
    "POST /admin/inventory/ad-spaces": Permission.ACCOUNT_MANAGEMENT,
    "POST /admin/inventory/ad-spaces/{ad_space_id}/delete": Permission.ACCOUNT_MANAGEMENT,
}

_MONEY_PATHS = ("/finance/", "/admin/top-ups")


def inferred_permission(route: APIRoute, method: str) -> Permission:
    from adstack.console import web  # the dependencies this reads are defined there

    calls = dependency_calls(route.dependant)
    if web.require_user not in calls:
        return Permission.PUBLIC
    if web.require_reviewer in calls:
        return Permission.REVIEW
    if web.require_account_manager in calls:
        return Permission.MONEY if route.path.startswith(_MONEY_PATHS) else Permission.ACCOUNT_MANAGEMENT
    if web.require_platform in calls:
        return Permission.PLATFORM_READ
    return Permission.READ if method.upper() in ("GET", "HEAD") else Permission.OPERATE


_known: dict[tuple[int, str], tuple[APIRoute, Permission]] = {}


def permission_of(route: APIRoute, method: str) -> Permission:
    method = "GET" if method.upper() == "HEAD" else method.upper()
    key = (id(route), method)
    known = _known.get(key)
    if known is not None and known[0] is route:  # the route is kept, so its id is not reused
        return known[1]
    declared = CONSOLE_PERMISSIONS.get(f"{method} {route.path}")
    permission = declared if declared is not None else inferred_permission(route, method)
    _known[key] = (route, permission)
    return permission


@lru_cache(maxsize=1)
def _console_routes() -> tuple[APIRoute, ...]:
    from adstack.console.api import public_router  # the pages import this module

    return tuple(api_routes(public_router.routes))


def permission_for(method: str, path: str) -> Permission | None:
    """The permission of the console route a request `method path` (below /console) would reach, found as the
    router finds it (first match in order); None when no route takes it."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    for route in _console_routes():
        if method in (route.methods or ()) and route.path_regex.match(path):
            return permission_of(route, method)
    return None
