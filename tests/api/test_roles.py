"""Every role against every route, generated from the app's route table.

POLICY below declares, for each /api/v1 route, the permission it needs; ALLOWED declares which roles hold each
permission. Each role then calls each route (ids nobody has, bodies that are empty), and the answer must be
401 (anonymous) or 403 for a role the policy refuses, and neither for a role it allows. A route the app serves
without a declared policy fails the test: a new route is classified before it ships.

The route table is read from app.routes, through included routers; the requests go through the HTTP API.
"""

from __future__ import annotations

import json
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
from adstack.core.bootstrap import seed
from adstack.core.db import make_session_factory
from adstack.core.ids import MAX_ID
from adstack.core.settings import Settings
from tests.conftest import empty_all_tables
from tests.support import Actor, Api, expect

API = "/api/v1"
ANONYMOUS = "anonymous"

# Who holds each permission. Roles: platform staff, tenants of a direct advertiser (owner, operator, viewer),
# the owner of an agency, the direct owner's API keys by scope, and nobody signed in.
STAFF = {"admin", "reviewer", "account manager", "on-behalf operator"}
SESSIONS = STAFF | {"owner", "operator", "viewer", "agency user"}
KEYS = {"read key", "write key", "finance key"}
ALLOWED: dict[str, set[str]] = {
    "public": SESSIONS | KEYS | {ANONYMOUS},
    "self": SESSIONS,
    "api_keys": SESSIONS,
    "read": SESSIONS | KEYS,
    "platform_read": STAFF,
    "operate": {"admin", "on-behalf operator", "owner", "operator", "agency user", "write key"},
    "account": {"admin", "account manager", "owner", "agency user", "write key"},
    "finance": {"admin", "account manager", "owner", "agency user", "finance key"},
    "manage_users": {"admin", "account manager", "owner", "agency user"},
    "review": {"admin", "reviewer", "on-behalf operator"},
    "account_management": {"admin", "account manager"},
    "money": {"admin", "account manager"},
    "admin": {"admin"},
}

# "METHOD path" -> permission. Keep sorted by path.
POLICY: dict[str, str] = {
    "GET /api/v1/accounts": "read",
    "POST /api/v1/accounts": "account",
    "GET /api/v1/accounts/{account_id}": "read",
    "PATCH /api/v1/accounts/{account_id}": "account",
    "GET /api/v1/accounts/{account_id}/documents": "read",
    "POST /api/v1/accounts/{account_id}/documents": "account",
    "GET /api/v1/accounts/{account_id}/documents/{document_id}": "read",
    "PUT /api/v1/accounts/{account_id}/documents/{document_id}": "account",
    "GET /api/v1/accounts/{account_id}/documents/{document_id}/file": "read",
    "POST /api/v1/accounts/{account_id}/review": "review",
    "POST /api/v1/accounts/{account_id}/submit": "account",
    "GET /api/v1/ad-groups": "read",
    "POST /api/v1/ad-groups": "operate",
    "POST /api/v1/ad-groups/batch-status": "operate",
    "POST /api/v1/ad-groups/estimate": "read",
    "DELETE /api/v1/ad-groups/{ad_group_id}": "operate",
    "GET /api/v1/ad-groups/{ad_group_id}": "read",
    "PATCH /api/v1/ad-groups/{ad_group_id}": "operate",
    "POST /api/v1/ad-groups/{ad_group_id}/copy": "operate",
    "POST /api/v1/ad-groups/{ad_group_id}/review": "review",
    "POST /api/v1/ad-groups/{ad_group_id}/submit": "operate",
    "GET /api/v1/ad-spaces": "read",
    "POST /api/v1/ad-spaces": "account_management",
    "DELETE /api/v1/ad-spaces/{ad_space_id}": "account_management",
    "GET /api/v1/ad-spaces/{ad_space_id}": "read",
    "PATCH /api/v1/ad-spaces/{ad_space_id}": "account_management",
    "GET /api/v1/apps": "read",
    "POST /api/v1/apps": "operate",
    "DELETE /api/v1/apps/{app_id}": "operate",
    "GET /api/v1/apps/{app_id}": "read",
    "PATCH /api/v1/apps/{app_id}": "operate",
    "GET /api/v1/apps/{app_id}/event-mappings": "read",
    "PUT /api/v1/apps/{app_id}/event-mappings": "operate",
    "GET /api/v1/apps/{app_id}/integrations": "read",
    "GET /api/v1/apps/{app_id}/integrations/{partner}": "read",
    "GET /api/v1/apps/{app_id}/postbacks": "read",
    "GET /api/v1/attribution/verdict-agreement": "read",
    "GET /api/v1/audiences": "read",
    "POST /api/v1/audiences/batch-delete": "operate",
    "POST /api/v1/audiences/import": "operate",
    "POST /api/v1/audiences/labels": "operate",
    "GET /api/v1/audiences/package-categories": "read",
    "PUT /api/v1/audiences/package-categories": "account_management",
    "DELETE /api/v1/audiences/package-categories/{row_id}": "account_management",
    "GET /api/v1/audiences/portrait-tags": "read",
    "PUT /api/v1/audiences/portrait-tags": "account_management",
    "GET /api/v1/audiences/reach": "read",
    "GET /api/v1/audiences/regions": "read",
    "POST /api/v1/audiences/regions": "account_management",
    "DELETE /api/v1/audiences/regions/{region_id}": "account_management",
    "POST /api/v1/audiences/upload": "operate",
    "DELETE /api/v1/audiences/{audience_id}": "operate",
    "GET /api/v1/audiences/{audience_id}": "read",
    "PATCH /api/v1/audiences/{audience_id}": "operate",
    "POST /api/v1/audiences/{audience_id}/import": "operate",
    "POST /api/v1/audiences/{audience_id}/refresh": "operate",
    "POST /api/v1/audiences/{audience_id}/upload": "operate",
    "GET /api/v1/audiences/{audience_id}/uploads": "read",
    "GET /api/v1/auth/api-keys": "api_keys",
    "POST /api/v1/auth/api-keys": "api_keys",
    "DELETE /api/v1/auth/api-keys/{key_id}": "api_keys",
    "POST /api/v1/auth/login": "public",
    "POST /api/v1/auth/logout": "self",
    "GET /api/v1/auth/me": "read",
    "POST /api/v1/auth/password": "self",
    "POST /api/v1/auth/password-reset": "public",
    "POST /api/v1/auth/password-reset/confirm": "public",
    "POST /api/v1/auth/register": "public",
    "GET /api/v1/auth/sessions": "self",
    "DELETE /api/v1/auth/sessions/{session_id}": "self",
    "POST /api/v1/auth/verify-email": "public",
    "POST /api/v1/auth/verify-email/resend": "self",
    "POST /api/v1/batch": "operate",
    "GET /api/v1/campaigns": "read",
    "POST /api/v1/campaigns": "operate",
    "POST /api/v1/campaigns/batch-status": "operate",
    "DELETE /api/v1/campaigns/{campaign_id}": "operate",
    "GET /api/v1/campaigns/{campaign_id}": "read",
    "PATCH /api/v1/campaigns/{campaign_id}": "operate",
    "POST /api/v1/campaigns/{campaign_id}/copy": "operate",
    "GET /api/v1/connectors": "read",
    "POST /api/v1/connectors": "operate",
    "PATCH /api/v1/connectors/apps/{binding_id}": "operate",
    "GET /api/v1/connectors/partners": "read",
    "GET /api/v1/connectors/columns/by-campaign-day": "read",
    "GET /api/v1/connectors/{connection_id}": "read",
    "PATCH /api/v1/connectors/{connection_id}": "operate",
    "GET /api/v1/connectors/{connection_id}/apps": "read",
    "GET /api/v1/connectors/{connection_id}/last-pull": "read",
    "POST /api/v1/connectors/{connection_id}/apps": "operate",
    "POST /api/v1/connectors/{connection_id}/pull": "operate",
    "GET /api/v1/connectors/{connection_id}/runs": "read",
    "GET /api/v1/conversions": "read",
    "GET /api/v1/creative-formats": "read",
    "GET /api/v1/creative-formats/{code}": "read",
    "PUT /api/v1/creative-formats/{code}/edits": "account_management",
    "GET /api/v1/creatives": "read",
    "POST /api/v1/creatives": "operate",
    "POST /api/v1/creatives/preview": "read",
    "DELETE /api/v1/creatives/{creative_id}": "operate",
    "GET /api/v1/creatives/{creative_id}": "read",
    "PATCH /api/v1/creatives/{creative_id}": "operate",
    "GET /api/v1/creatives/{creative_id}/combinations": "read",
    "POST /api/v1/creatives/{creative_id}/copy": "operate",
    "GET /api/v1/creatives/{creative_id}/preview": "read",
    "GET /api/v1/creatives/{creative_id}/rejections": "read",
    "POST /api/v1/creatives/{creative_id}/review": "review",
    "POST /api/v1/creatives/{creative_id}/status": "operate",
    "POST /api/v1/creatives/{creative_id}/submit": "operate",
    "GET /api/v1/device-populations": "read",
    "DELETE /api/v1/device-populations/{country}": "account_management",
    "GET /api/v1/device-populations/{country}": "read",
    "PUT /api/v1/device-populations/{country}": "account_management",
    "GET /api/v1/finance/accounts/{account_id}/balance": "read",
    "GET /api/v1/finance/accounts/{account_id}/ledger": "read",
    "GET /api/v1/finance/ad-groups/{ad_group_id}/spend": "read",
    "GET /api/v1/finance/credit-lines": "read",
    "POST /api/v1/finance/credit-lines": "money",
    "GET /api/v1/finance/credit-lines/{line_id}": "read",
    "POST /api/v1/finance/credit-lines/{line_id}/renew": "money",
    "POST /api/v1/finance/credit-lines/{line_id}/settle": "money",
    "GET /api/v1/finance/credit-lines/{line_id}/statement.csv": "read",
    "POST /api/v1/finance/refunds": "money",
    "GET /api/v1/finance/top-up-requests": "read",
    "POST /api/v1/finance/top-up-requests": "finance",
    "GET /api/v1/finance/top-up-requests/{request_id}": "read",
    "POST /api/v1/finance/top-up-requests/{request_id}/confirm": "money",
    "GET /api/v1/finance/top-up-requests/{request_id}/proof": "read",
    "POST /api/v1/finance/top-up-requests/{request_id}/reject": "money",
    "POST /api/v1/finance/top-ups": "money",
    "GET /api/v1/finance/transfers": "read",
    "POST /api/v1/finance/transfers": "finance",
    "GET /api/v1/finance/transfers/export.csv": "read",
    "GET /api/v1/fx-rates": "read",
    "PUT /api/v1/fx-rates/{currency}": "account_management",
    "GET /api/v1/invitations": "manage_users",
    "POST /api/v1/invitations": "manage_users",
    "POST /api/v1/invitations/accept": "public",
    "DELETE /api/v1/invitations/{invitation_id}": "manage_users",
    "GET /api/v1/media": "read",
    "POST /api/v1/media": "operate",
    "GET /api/v1/media-center": "read",
    "GET /api/v1/media/{media_id}": "read",
    "GET /api/v1/notifications": "read",
    "POST /api/v1/notifications/read-all": "read",
    "POST /api/v1/notifications/{notification_id}/read": "read",
    "GET /api/v1/operation-logs": "read",
    "GET /api/v1/operation-logs/export.csv": "read",
    "GET /api/v1/overview": "read",
    "GET /api/v1/pipeline/status": "platform_read",
    "POST /api/v1/postbacks/process": "account_management",
    "GET /api/v1/postbacks/rejected": "platform_read",
    "GET /api/v1/publishers": "read",
    "POST /api/v1/publishers": "account_management",
    "DELETE /api/v1/publishers/{publisher_id}": "account_management",
    "GET /api/v1/publishers/{publisher_id}": "read",
    "PATCH /api/v1/publishers/{publisher_id}": "account_management",
    "GET /api/v1/reports": "read",
    "GET /api/v1/reports/download": "read",
    "GET /api/v1/reports/filters": "read",
    "GET /api/v1/reports/jobs": "read",
    "POST /api/v1/reports/jobs": "read",
    "GET /api/v1/reports/jobs/{job_id}": "read",
    "GET /api/v1/reports/jobs/{job_id}/download": "read",
    "POST /api/v1/review/batch": "review",
    "GET /api/v1/review/history/{object_type}/{object_id}": "read",
    "GET /api/v1/review/queue": "review",
    "GET /api/v1/review/rejections": "read",
    "POST /api/v1/review/{object_type}/{object_id}/lift-suspension": "review",
    "POST /api/v1/review/{object_type}/{object_id}/suspend": "review",
    "GET /api/v1/settlement-rules": "public",
    "POST /api/v1/settlement-rules": "account_management",
    "DELETE /api/v1/settlement-rules/{rule_id}": "account_management",
    "GET /api/v1/tracking/invalid": "platform_read",
    "GET /api/v1/users": "read",
    "POST /api/v1/users/{user_id}/activate": "manage_users",
    "PUT /api/v1/users/{user_id}/account-role": "manage_users",
    "POST /api/v1/users/{user_id}/deactivate": "manage_users",
    "PUT /api/v1/users/{user_id}/on-behalf": "admin",
    "POST /api/v1/users/{user_id}/verify-email": "account_management",
    "GET /api/v1/webhooks": "read",
    "POST /api/v1/webhooks": "account",
    "DELETE /api/v1/webhooks/{endpoint_id}": "account",
    "GET /api/v1/webhooks/{endpoint_id}/deliveries": "read",
}

# Where a handler refuses more than the gate: (route, role) -> why the role is refused there too.
NARROWER: dict[tuple[str, str], str] = {
    ("DELETE /api/v1/webhooks/{endpoint_id}", "admin"): "an account's own users manage its webhook endpoints",
    ("DELETE /api/v1/webhooks/{endpoint_id}", "account manager"): "an account's own users manage its webhook endpoints",
}

# Path parameters that are not ids, filled with a value the route accepts.
TEXT_PARAMS = {
    "country": "FJ",
    "currency": "INR",
    "code": "interstitial_image",
    "partner": "adjust",
    "object_type": "account",
}


@dataclass
class Call:
    route: str
    role: str
    status: int
    body: str = ""


@dataclass
class World:
    routes: list[tuple[str, str]]  # (method, path)
    calls: list[Call] = field(default_factory=list)


def _roles(api: Api) -> dict[str, Actor | None]:
    admin = api.admin()
    reviewer = api.admin(Role.REVIEWER)
    manager = api.admin(Role.ACCOUNT_MANAGER)
    on_behalf = api.admin(Role.REVIEWER)
    expect(
        api.client.put(f"{API}/users/{on_behalf.user_id}/on-behalf", headers=admin.headers, json={"granted": True}), 200
    )
    owner = api.approved_account(admin)
    agency = api.approved_account(admin, type="agency")
    api.sub_account(agency, admin)
    return {
        "admin": admin,
        "reviewer": reviewer,
        "account manager": manager,
        "on-behalf operator": on_behalf,
        "owner": owner,
        "operator": api.member(owner, "operator"),
        "viewer": api.member(owner, "viewer"),
        "agency user": agency,
        "read key": api.api_key(owner, "read"),
        "write key": api.api_key(owner, "write"),
        "finance key": api.api_key(owner, "finance"),
        ANONYMOUS: None,
    }


def _path(route: APIRoute) -> str:
    return route.path.format(**{p.name: TEXT_PARAMS.get(p.name, MAX_ID) for p in route.dependant.path_params})


def _requests(app: Any) -> Iterator[tuple[str, str, APIRoute]]:
    for route in api_routes(app.routes):
        if route.path.startswith(f"{API}/"):
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                yield method, route.path, route


@pytest.fixture(scope="module")
def world(engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    seed(engine)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("roles"),
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
            api = Api(client, session)
            roles = _roles(api)
            requests = list(_requests(client.app))
            # Signing out ends the token: each role does it last.
            requests.sort(key=lambda r: r[1] == f"{API}/auth/logout")
            built = World(routes=[(m, p) for m, p, _ in requests])
            for method, path, route in requests:
                for role, actor in roles.items():
                    headers = actor.headers if actor is not None else {}
                    kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                    response = client.request(method, _path(route), headers=headers, **kwargs)
                    built.calls.append(Call(f"{method} {path}", role, response.status_code, response.text[:2000]))
            yield built
    finally:
        empty_all_tables(engine)


def test_every_route_has_a_declared_policy(world: World) -> None:
    undeclared = sorted(f"{m} {p}" for m, p in world.routes if f"{m} {p}" not in POLICY)
    assert not undeclared, "routes without a declared policy (add them to POLICY):\n" + "\n".join(undeclared)
    assert {POLICY[f"{m} {p}"] for m, p in world.routes} <= set(ALLOWED)


def test_every_role_is_allowed_or_refused_as_declared(world: World) -> None:
    wrong = []
    for call in world.calls:
        permission = POLICY.get(call.route)
        if permission is None:
            continue  # reported by test_every_route_has_a_declared_policy
        allowed = call.role in ALLOWED[permission] and (call.route, call.role) not in NARROWER
        refused_as = 401 if call.role == ANONYMOUS else 403
        if allowed and call.status in (401, 403):
            wrong.append(f"{call.route} as {call.role}: {call.status}, expected allowed ({permission}): {call.body}")
        elif not allowed and call.status != refused_as:
            wrong.append(f"{call.route} as {call.role}: {call.status}, expected {refused_as} ({permission})")
    assert not wrong, f"{len(wrong)} answers differ from the policy:\n" + "\n".join(wrong)


def test_a_refusal_names_the_missing_role_or_scope(world: World) -> None:
    refusals = [
        c for c in world.calls if c.status == 403 and c.route in POLICY and c.role not in ALLOWED[POLICY[c.route]]
    ]
    assert refusals
    for call in refusals:
        field = json.loads(call.body)["error"]["fields"][0]
        assert field["field"] in ("role", "scope", "authorization") and field["limit"], (
            f"{call.route} as {call.role}: {call.body}"
        )
