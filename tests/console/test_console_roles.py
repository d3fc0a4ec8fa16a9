"""Every role against the console's write routes, generated from the console's route table.

The console authorises its pages with the API's permissions (accounts/permissions.py): POLICY below declares,
for each console route that writes (every POST, and the GET pages that show the forms editing campaigns, ad
groups, creatives and audiences), the permission it needs. Each role signs in to the console and calls each
route (ids nobody has, empty forms, a valid CSRF token); a role the policy refuses must get the console's 403
page, a role it allows must get past the gate. A write route the console serves without a declared policy fails
the test: a new form is classified before it ships.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from adstack.accounts.models import Role
from adstack.accounts.permissions import api_routes
from adstack.app import create_app
from adstack.console.web import ConsoleRoute
from adstack.core.bootstrap import seed
from adstack.core.db import make_session_factory
from adstack.core.ids import MAX_ID
from adstack.core.settings import Settings
from tests.campaigns.helpers import ad_group, campaign
from tests.conftest import empty_all_tables
from tests.console.support import csrf_from, sign_in
from tests.support import Actor, Api, expect

API = "/api/v1"
CONSOLE = "/console"
STAFF_PASSWORD = "admin-password"  # tests.support.Api.admin
OWNER_PASSWORD = "correct horse battery"  # tests.support.Api.registration
MEMBER_PASSWORD = "colleague password 1"  # tests.support.Api.member

# Who holds each permission: platform staff (the "on-behalf operator" is a reviewer an admin granted "operate on
# behalf"; an admin operates without a grant) and the users of a direct advertiser.
STAFF = {"admin", "reviewer", "account manager", "on-behalf operator"}
TENANTS = {"owner", "operator", "viewer"}
ALLOWED: dict[str, set[str]] = {
    "public": STAFF | TENANTS,
    "self": STAFF | TENANTS,
    "api_keys": STAFF | TENANTS,
    "read": STAFF | TENANTS,
    "platform_read": STAFF,
    "operate": {"admin", "on-behalf operator", "owner", "operator"},
    "account": {"admin", "account manager", "owner"},
    "finance": {"admin", "account manager", "owner"},
    "manage_users": {"admin", "account manager", "owner"},
    "review": {"admin", "reviewer", "on-behalf operator"},
    "account_management": {"admin", "account manager"},
    "money": {"admin", "account manager"},
}

# "METHOD path" -> permission, for every console route that writes. Keep sorted by path.
POLICY: dict[str, str] = {
    "POST /console/accounts/{account_id}/documents": "account",
    "POST /console/accounts/{account_id}/edit": "account",
    "POST /console/accounts/{account_id}/sub-accounts": "account",
    "POST /console/accounts/{account_id}/submit": "account",
    "POST /console/admin/inventory/ad-spaces": "account_management",
    "POST /console/admin/inventory/ad-spaces/{ad_space_id}/delete": "account_management",
    "POST /console/admin/inventory/publishers": "account_management",
    "POST /console/admin/review/batch": "review",
    "POST /console/admin/review/suspend": "review",
    "POST /console/admin/review/{object_type}/{object_id}": "review",
    "POST /console/admin/review/{object_type}/{object_id}/lift": "review",
    "POST /console/admin/top-ups/{request_id}": "money",
    "GET /console/ads/ad-groups/{ad_group_id}/creatives/new": "operate",
    "POST /console/ads/ad-groups/{ad_group_id}/creatives/new": "operate",
    "POST /console/ads/ad-groups/{ad_group_id}/creatives/form": "read",
    "GET /console/ads/ad-groups/{ad_group_id}/edit": "operate",
    "POST /console/ads/ad-groups/{ad_group_id}/edit": "operate",
    "POST /console/ads/ad-groups/{ad_group_id}/media": "operate",
    "POST /console/ads/ad-groups/{ad_group_id}/preview": "read",
    "POST /console/ads/ad-groups/{ad_group_id}/submit": "operate",
    "GET /console/ads/campaigns/{campaign_id}/ad-groups/new": "operate",
    "POST /console/ads/campaigns/{campaign_id}/ad-groups/new": "operate",
    "GET /console/ads/campaigns/{campaign_id}/edit": "operate",
    "POST /console/ads/campaigns/{campaign_id}/edit": "operate",
    "GET /console/ads/creatives/{creative_id}/edit": "operate",
    "POST /console/ads/creatives/{creative_id}/edit": "operate",
    "POST /console/ads/creatives/{creative_id}/submit": "operate",
    "POST /console/ads/estimate": "read",
    "GET /console/ads/new": "operate",
    "POST /console/ads/new": "operate",
    "POST /console/ads/{level}/batch": "operate",
    "POST /console/ads/{level}/{object_id}/copy": "operate",
    "GET /console/ads/{level}/{object_id}/quick-edit": "operate",
    "POST /console/ads/{level}/{object_id}/quick-edit": "operate",
    "POST /console/ads/{level}/{object_id}/status": "operate",
    "POST /console/announcements": "platform_read",
    "POST /console/announcements/{announcement_id}/delete": "platform_read",
    "POST /console/api-keys": "api_keys",
    "POST /console/api-keys/{key_id}/revoke": "api_keys",
    "POST /console/apps": "operate",
    "POST /console/apps/{app_id}/delete": "operate",
    "POST /console/apps/{app_id}/edit": "operate",
    "POST /console/apps/{app_id}/mappings": "operate",
    "POST /console/audiences": "operate",
    "POST /console/audiences/change": "operate",
    "POST /console/audiences/delete": "operate",
    "GET /console/audiences/labels/new": "operate",
    "POST /console/audiences/labels/new": "operate",
    "GET /console/audiences/{audience_id}/edit": "operate",
    "POST /console/audiences/{audience_id}/edit": "operate",
    "POST /console/audiences/{audience_id}/refresh": "operate",
    "POST /console/connectors": "operate",
    "POST /console/connectors/{connection_id}/apps": "operate",
    "POST /console/connectors/{connection_id}/apps/{binding_id}": "operate",
    "POST /console/connectors/{connection_id}/pull": "operate",
    "POST /console/finance/credit-lines": "money",
    "POST /console/finance/credit-lines/{line_id}/renew": "money",
    "POST /console/finance/credit-lines/{line_id}/settle": "money",
    "POST /console/finance/top-up-requests": "finance",
    "POST /console/finance/top-ups": "money",
    "POST /console/finance/transfers": "finance",
    "POST /console/forgot-password": "public",
    "POST /console/invitations/accept": "public",
    "POST /console/invitations/{invitation_id}/revoke": "manage_users",
    "POST /console/language": "public",
    "POST /console/notifications/read-all": "read",
    "POST /console/notifications/{notification_id}/read": "read",
    "POST /console/register": "public",
    "POST /console/reports/jobs": "read",
    "POST /console/reset-password": "public",
    "POST /console/security/password": "self",
    "POST /console/security/sessions/{session_id}/revoke": "self",
    "POST /console/security/verify-email": "self",
    "POST /console/sign-in": "public",
    "POST /console/sign-out": "public",
    "POST /console/users/invite": "manage_users",
    "POST /console/users/{user_id}/activate": "manage_users",
    "POST /console/users/{user_id}/deactivate": "manage_users",
    "POST /console/users/{user_id}/role": "manage_users",
    "POST /console/verify-email": "public",
}

# Where a page refuses more than the gate: (route, role) -> why the role is refused there too.
NARROWER: dict[tuple[str, str], str] = {}

# Path parameters that are not ids, filled with each value the route accepts.
TEXT_PARAMS: dict[str, tuple[str, ...]] = {
    "level": ("campaigns", "ad-groups", "creatives"),
    "object_type": ("account", "ad_group", "creative"),
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Call:
    route: str
    url: str
    role: str
    status: int
    refusal_page: bool  # the console's 403 page
    location: str
    body: str = ""


@dataclass
class World:
    routes: list[str]  # "METHOD path" of every console route that writes or shows a write form
    calls: list[Call] = field(default_factory=list)
    clients: dict[str, TestClient] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)
    api: Api | None = None


def _full_path(route: APIRoute) -> str:
    """The page's path as the console serves it: page routers declare theirs below /console."""
    return route.path if route.path.startswith(f"{CONSOLE}/") else CONSOLE + route.path


def _urls(route: APIRoute) -> list[str]:
    urls = [_full_path(route)]
    for param in route.dependant.path_params:
        values = TEXT_PARAMS.get(param.name, (str(MAX_ID),))
        urls = [url.replace(f"{{{param.name}}}", value) for url in urls for value in values]
    return urls


def _console_requests(app: Any) -> Iterator[tuple[str, APIRoute]]:
    for route in api_routes(app.routes):
        if isinstance(route, ConsoleRoute):
            for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
                yield method, route


def _signed_in(app: Any, email: str, password: str) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    assert sign_in(client, email, password).status_code == 303, f"{email} could not sign in to the console"
    return client


def _csrf(client: TestClient) -> str:
    return csrf_from(client.get(f"{CONSOLE}/notifications").text)


@pytest.fixture(scope="module")
def world(engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    seed(engine)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("console-roles"),
        database_url=database_url,
        secret_key="test-secret-key",
        environment="test",
        public_base_url="http://testserver",
    )
    try:
        with (
            TestClient(create_app(settings), raise_server_exceptions=False) as client,
            make_session_factory(engine)() as session,
        ):
            app = client.app
            api = Api(client, session)
            admin = api.admin()
            on_behalf = api.admin(Role.REVIEWER)
            expect(
                client.put(f"{API}/users/{on_behalf.user_id}/on-behalf", headers=admin.headers, json={"granted": True}),
                200,
            )
            owner = api.approved_account(admin)
            actors = {
                "admin": admin,
                "reviewer": api.admin(Role.REVIEWER),
                "account manager": api.admin(Role.ACCOUNT_MANAGER),
                "on-behalf operator": on_behalf,
                "owner": owner,
                "operator": api.member(owner, "operator"),
                "viewer": api.member(owner, "viewer"),
            }
            passwords = {"owner": OWNER_PASSWORD, "operator": MEMBER_PASSWORD, "viewer": MEMBER_PASSWORD}
            clients = {
                role: _signed_in(app, actor.email, passwords.get(role, STAFF_PASSWORD))
                for role, actor in actors.items()
            }
            tokens = {role: _csrf(c) for role, c in clients.items()}

            requests = [
                (method, route)
                for method, route in _console_requests(app)
                if method in WRITE_METHODS or f"{method} {_full_path(route)}" in POLICY
            ]
            # Signing out ends the session: each role does it last.
            requests.sort(key=lambda r: _full_path(r[1]) == f"{CONSOLE}/sign-out")
            built = World(routes=[f"{m} {_full_path(r)}" for m, r in requests], clients=clients, actors=actors, api=api)
            for method, route in requests:
                for url in _urls(route):
                    for role, role_client in clients.items():
                        kwargs: dict[str, Any] = {}
                        if method in WRITE_METHODS:
                            kwargs = {"data": {"csrf_token": tokens[role]}}
                        response = role_client.request(method, url, follow_redirects=False, **kwargs)
                        built.calls.append(
                            Call(
                                f"{method} {_full_path(route)}",
                                url,
                                role,
                                response.status_code,
                                'data-error-status="403"' in response.text,
                                response.headers.get("location", ""),
                                response.text[-1000:],
                            )
                        )
            # Fresh sessions for the tests below (the sweep signed every role out).
            built.clients = {
                role: _signed_in(app, actor.email, passwords.get(role, STAFF_PASSWORD))
                for role, actor in actors.items()
            }
            yield built
    finally:
        empty_all_tables(engine)


def test_every_console_write_route_has_a_declared_policy(world: World) -> None:
    undeclared = sorted(r for r in world.routes if r not in POLICY)
    assert not undeclared, "console routes without a declared policy (add them to POLICY):\n" + "\n".join(undeclared)
    gone = sorted(set(POLICY) - set(world.routes))
    assert not gone, "POLICY names routes the console no longer serves:\n" + "\n".join(gone)


def test_every_role_is_allowed_or_refused_as_declared(world: World) -> None:
    wrong = []
    for call in world.calls:
        permission = POLICY.get(call.route)
        if permission is None:
            continue  # reported by test_every_console_write_route_has_a_declared_policy
        allowed = call.role in ALLOWED[permission] and (call.route, call.role) not in NARROWER
        # A gated page never sends a signed-in visitor to sign in; public forms may (signing out, a reset mailed),
        # and their 401 is their own answer (a wrong password).
        to_sign_in = permission != "public" and call.location.startswith(f"{CONSOLE}/sign-in")
        if allowed and (call.status == 403 or to_sign_in):
            wrong.append(
                f"{call.url} as {call.role}: {call.status}, expected allowed ({permission}): {call.body[-600:]}"
            )
        elif not allowed and (call.status != 403 or not call.refusal_page):
            wrong.append(f"{call.url} as {call.role}: {call.status}, expected the 403 page ({permission})")
    assert not wrong, f"{len(wrong)} answers differ from the policy:\n" + "\n".join(wrong)


def test_staff_without_the_grant_and_viewers_change_no_campaign_through_the_console(world: World) -> None:
    assert world.api is not None
    owner = world.actors["owner"]
    made = campaign(world.api, owner, name="Kept as it was")
    group = ad_group(world.api, owner, made["id"], name="Kept group")
    for role in ("reviewer", "account manager", "viewer"):
        client = world.clients[role]
        token = _csrf(client)
        renamed = client.post(
            f"{CONSOLE}/ads/campaigns/{made['id']}/quick-edit", data={"csrf_token": token, "name": f"Renamed by {role}"}
        )
        assert renamed.status_code == 403, f"{role}: {renamed.status_code}"
        paused = client.post(
            f"{CONSOLE}/ads/ad-groups/{group['id']}/status",
            data={"csrf_token": token, "action": "pause"},
            follow_redirects=False,
        )
        assert paused.status_code == 403, f"{role}: {paused.status_code}"
        # They still read the campaign's page.
        assert client.get(f"{CONSOLE}/ads/campaigns/{made['id']}").status_code == 200
    seen = expect(world.api.client.get(f"{API}/campaigns/{made['id']}", headers=owner.headers), 200)
    assert seen["name"] == "Kept as it was"
    assert (
        expect(world.api.client.get(f"{API}/ad-groups/{group['id']}", headers=owner.headers), 200)["status"] != "paused"
    )


def test_the_refusal_page_speaks_the_visitors_language(world: World) -> None:
    client = world.clients["reviewer"]
    token = _csrf(client)
    client.cookies.set("adstack_lang", "zh", path=CONSOLE)
    try:
        refused = client.post(f"{CONSOLE}/ads/new", data={"csrf_token": token, "name": "x"})
    finally:
        client.cookies.delete("adstack_lang", path=CONSOLE)
    assert refused.status_code == 403
    assert 'data-error-status="403"' in refused.text
    # The refusal names the role, in words: not the permission and role codes the service words it with.
    assert "无权访问" in refused.text and "您的角色无权执行此操作。" in refused.text
    assert "operate" not in refused.text.lower().split("<main", 1)[-1]


def test_staff_edits_through_the_console_are_logged_on_behalf(world: World) -> None:
    assert world.api is not None
    api, owner = world.api, world.actors["owner"]
    made = campaign(api, owner, name="Edited for the client")
    for role in ("admin", "on-behalf operator", "owner"):
        client = world.clients[role]
        edited = client.post(
            f"{CONSOLE}/ads/campaigns/{made['id']}/quick-edit",
            data={"csrf_token": _csrf(client), "name": f"Renamed by {role}"},
        )
        assert edited.status_code == 200, f"{role}: {edited.status_code} {edited.text[-500:]}"
    assert (
        expect(api.client.get(f"{API}/campaigns/{made['id']}", headers=owner.headers), 200)["name"]
        == "Renamed by owner"
    )

    def log(on_behalf: str) -> list[dict[str, Any]]:
        page = expect(
            api.client.get(
                f"{API}/operation-logs",
                headers=owner.headers,
                params={"on_behalf": on_behalf, "object_type": "campaign"},
            ),
            200,
        )
        return [e for e in page["items"] if e["object_id"] == made["id"] and e["client"] == "console"]

    on_behalf = log("true")
    assert {e["operator_email"] for e in on_behalf} == {
        world.actors["admin"].email,
        world.actors["on-behalf operator"].email,
    }
    assert all(e["account_id"] == owner.account_id for e in on_behalf)
    assert {e["operator_email"] for e in log("false")} == {owner.email}
