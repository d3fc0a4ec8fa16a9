"""Tenant isolation for every route, generated from the route table.

Four tenants hold one object of every kind the API creates: a direct advertiser (the owner), a rival
advertiser, and one sub-account under each of two agencies. Every /api/v1 operation with a path parameter
is called on each tenant's objects by tenants that must not reach them: reads answer 404 (or 403) and
show nothing of the object, mutations change nothing, and a foreign object answers exactly like a missing
one. Catalogue rows are readable and never writable by tenants. Lists show an agency its own sub-accounts
and nobody else's, and ids of another tenant smuggled into bodies and queries are refused. Finally each
owner re-reads everything it has and finds it unchanged.

Everything is built once per module (the harness empties the database afterwards); the tests read the
outcomes. A known isolation bug goes into KNOWN_BUGS: the sweep then leaves it out and an xfail(strict)
test keeps it visible until it is fixed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine

from adstack.app import create_app
from adstack.core.bootstrap import seed
from adstack.core.db import make_session_factory
from adstack.core.settings import Settings
from tests.audiences.helpers import gaids, id_file
from tests.conftest import empty_all_tables
from tests.e2e.media_files import png
from tests.e2e.tenancy import (
    API,
    Operation,
    RecordingConnector,
    Tenant,
    body_of,
    build_catalogue,
    build_tenant,
    catalogue_reads,
    grant_credit_line,
    is_success,
    missing_path,
    operations,
    paths_for,
    recording_connector_factory,
    request_args,
    unmapped,
)
from tests.support import Actor, Api, expect

# Operation -> what is wrong. These are left out of the sweeps and asserted, strictly expected to fail, by
# test_known_isolation_bug until they are fixed.
KNOWN_BUGS: dict[str, str] = {}

# Fields that change by themselves between two reads.
VOLATILE_FIELDS = frozenset({"last_used_at"})


# ---------- the world ----------


@dataclass
class Intruder:
    name: str
    actor: Actor
    home: Tenant  # the tenant it acts for, whose objects it may legitimately use


@dataclass
class Outcome:
    intruder: str
    victim: str
    operation: str
    path: str
    status: int
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.operation} as {self.intruder} on {self.victim}'s {self.path} -> {self.status}: " + "; ".join(
            self.problems
        )


@dataclass
class World:
    api: Api
    admin: Actor
    tenants: dict[str, Tenant]
    intruders: dict[str, Intruder]
    catalogue: dict[str, Any]
    operations: list[Operation]
    owner_reads: dict[str, Response] = field(default_factory=dict)
    path_outcomes: list[Outcome] = field(default_factory=list)
    catalogue_outcomes: list[Outcome] = field(default_factory=list)
    reference_outcomes: list[Outcome] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    pulls_by_intruders: list[str] = field(default_factory=list)
    # (caller, operation) -> the status the same call answers when its ids belong to nobody
    missing_answers: dict[tuple[str, str], int] = field(default_factory=dict)

    def missing_answer(self, intruder: Intruder, operation: str, call: tuple[str, str, dict[str, Any]]) -> int:
        key = (intruder.name, operation)
        if key not in self.missing_answers:
            self.missing_answers[key] = _call(self.api, intruder.actor, *call).status_code
        return self.missing_answers[key]

    def outcomes(self) -> Iterator[Outcome]:
        yield from self.path_outcomes
        yield from self.catalogue_outcomes
        yield from self.reference_outcomes


# Whose objects are attacked, and by whom: a direct advertiser's by another advertiser and by an agency, an agency's
# sub-account's by another agency and by an advertiser.
ATTACKS: dict[str, tuple[str, ...]] = {
    "owner": ("rival", "agency A"),
    "sub-account B": ("agency A", "rival"),
    "sub-account A": ("agency B",),
}


@pytest.fixture(scope="module")
def world(engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    seed(engine)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("isolation"),
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
            client.app.state.connector_factory = recording_connector_factory  # type: ignore[attr-defined]
            api = Api(client, session)
            built = _build(api, client.app.openapi())  # type: ignore[attr-defined]
            # What the platform does on its own (the notification worker's scans, sends and retries) is nobody's
            # attack: it runs once now, then holds still until the owners' second read.
            notifications = client.app.state.notifications  # type: ignore[attr-defined]
            notifications.stop()
            notifications.drain()
            _attack(built)
            yield built
    finally:
        empty_all_tables(engine)


def _build(api: Api, openapi: dict[str, Any]) -> World:
    admin = api.admin()
    owner = api.approved_account(admin, company_name="Owneria Games（Shenzhen）Co., Ltd.")
    rival = api.approved_account(admin, company_name="Rivalry Studio Pte. Ltd.")
    agency_a = api.approved_account(admin, type="agency", company_name="Alphaprime Agency Ltd.")
    agency_b = api.approved_account(admin, type="agency", company_name="Betamark Agency Ltd.")
    sub_a = api.sub_account(agency_a, admin, company_name="Subalpha Apps Ltd.")
    sub_b = api.sub_account(agency_b, admin, company_name="Subbeta Apps Ltd.")

    tenants = {
        "owner": build_tenant(api, admin, owner, owner.account_id or 0, "Owneria"),
        "rival": build_tenant(api, admin, rival, rival.account_id or 0, "Rivalry"),
        "sub-account A": build_tenant(api, admin, agency_a, sub_a, "Subalpha"),
        "sub-account B": build_tenant(api, admin, agency_b, sub_b, "Subbeta"),
    }
    for agency, tenant in ((agency_a, tenants["sub-account A"]), (agency_b, tenants["sub-account B"])):
        # The agency's own account belongs to the tenant too, and funds it by a transfer.
        tenant.ids["account_id"].append(agency.account_id or 0)
        expect(
            api.client.post(
                f"{API}/finance/top-ups",
                headers=admin.headers,
                json={"account_id": agency.account_id, "amount_micros": 900_000_000},
            ),
            201,
        )
        expect(
            api.client.post(
                f"{API}/finance/transfers",
                headers=agency.headers,
                json={
                    "kind": "transfer",
                    "sub_account_id": tenant.account_id,
                    "amount_micros": 40_000_000,
                    "remarks": f"{tenant.label} monthly allocation",
                },
            ),
            201,
        )
        tenant.ids["line_id"].append(grant_credit_line(api, admin, agency.account_id or 0, f"{tenant.label} agency"))
    intruders = {
        "owner": Intruder("owner", owner, tenants["owner"]),
        "rival": Intruder("rival", rival, tenants["rival"]),
        "agency A": Intruder("agency A", agency_a, tenants["sub-account A"]),
        "agency B": Intruder("agency B", agency_b, tenants["sub-account B"]),
    }
    return World(
        api=api,
        admin=admin,
        tenants=tenants,
        intruders=intruders,
        catalogue=build_catalogue(api, admin),
        operations=operations(openapi),
    )


# ---------- probing ----------


def _call(api: Api, actor: Actor, method: str, path: str, args: dict[str, Any]) -> Response:
    args = dict(args)
    headers = {**args.pop("headers", {}), **actor.headers}
    return api.client.request(method.upper(), path, headers=headers, **args)


def _owner_reads(world: World) -> dict[str, Response]:
    """Everything each attacked tenant can read of its own: every GET route on its objects, and its lists."""
    reads = {}
    for tenant in (world.tenants[name] for name in ATTACKS):
        for operation in world.operations:
            if operation.method == "get" and operation.tenant_owned:
                for path in paths_for(operation, tenant.ids, world.catalogue):
                    reads[f"{tenant.label} {path}"] = world.api.client.get(path, headers=tenant.actor.headers)
        for path, _ in LISTS:
            reads[f"{tenant.label} {path}"] = world.api.client.get(path, headers=tenant.actor.headers)
    for path in catalogue_reads(world.catalogue):
        reads[f"admin {path}"] = world.api.client.get(path, headers=world.admin.headers)
    return reads


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _attack(world: World) -> None:
    world.owner_reads = before = _owner_reads(world)
    pulls = len(RecordingConnector.pulls)
    for victim_name, intruder_names in ATTACKS.items():
        victim = world.tenants[victim_name]
        for intruder_name in intruder_names:
            intruder = world.intruders[intruder_name]
            world.path_outcomes += _path_attack(world, intruder, victim)
            world.reference_outcomes += _reference_attack(world, intruder, victim)
    for intruder_name in ("rival", "agency A"):
        world.catalogue_outcomes += _catalogue_attack(world, world.intruders[intruder_name])
    world.pulls_by_intruders = RecordingConnector.pulls[pulls:]
    after = _owner_reads(world)
    for key, response in before.items():
        if (response.status_code, _comparable(body_of(response))) != (
            after[key].status_code,
            _comparable(body_of(after[key])),
        ):
            world.changed.append(
                f"{key}: {response.status_code} {response.text[:300]} -> "
                f"{after[key].status_code} {after[key].text[:300]}"
            )


def _path_attack(world: World, intruder: Intruder, victim: Tenant) -> Iterator[Outcome]:
    for operation in world.operations:
        if not operation.tenant_owned or unmapped(operation):
            continue
        args = request_args(operation, intruder.home)
        missing = world.missing_answer(
            intruder, operation.name, (operation.method, missing_path(operation, world.catalogue), args)
        )
        for path in paths_for(operation, victim.ids, world.catalogue):
            response = _call(world.api, intruder.actor, operation.method, path, args)
            outcome = Outcome(intruder.name, victim.label, operation.name, path, response.status_code)
            if is_success(response):
                outcome.problems.append("the request succeeded")
            elif response.status_code not in (403, 404):
                outcome.problems.append("answered other than 404/403: the request went past the tenancy check")
            if response.status_code != missing:
                outcome.problems.append(f"a missing object answers {missing}: the two can be told apart")
            if victim.shows_in(response):
                outcome.problems.append(f"the response shows {victim.label}'s data")
            yield outcome


def _catalogue_attack(world: World, intruder: Intruder) -> Iterator[Outcome]:
    for operation in world.operations:
        if not operation.catalogue_owned or unmapped(operation):
            continue
        for path in paths_for(operation, {}, world.catalogue):
            response = _call(world.api, intruder.actor, operation.method, path, request_args(operation, intruder.home))
            outcome = Outcome(intruder.name, "the platform", operation.name, path, response.status_code)
            if operation.mutates and response.status_code != 403:
                outcome.problems.append("a tenant's change to the catalogue was not refused with 403")
            if not operation.mutates and response.status_code >= 500:
                outcome.problems.append("a catalogue read failed")
            yield outcome
    for name, action in STAFF_ACTIONS.items():
        method, path, args = action(intruder.home, world.catalogue)
        response = _call(world.api, intruder.actor, method, f"{API}{path}", args)
        outcome = Outcome(intruder.name, "the platform", name, f"{method.upper()} {API}{path}", response.status_code)
        if response.status_code != 403:
            outcome.problems.append("a platform staff action was not refused with 403")
        yield outcome


# Actions without a path parameter that only platform staff may take; a tenant naming its own account is refused.
StaffAction = Callable[[Tenant, dict[str, Any]], tuple[str, str, dict[str, Any]]]
STAFF_ACTIONS: dict[str, StaffAction] = {
    "POST /api/v1/review/batch": lambda home, catalogue: (
        "post",
        "/review/batch",
        {"json": {"items": [{"object_type": "ad_group", "object_id": home.id("ad_group_id")}], "decision": "approve"}},
    ),
    "POST /api/v1/settlement-rules": lambda home, catalogue: (
        "post",
        "/settlement-rules",
        {
            "json": {
                "country": "FJ",
                "entity": "Xiaomi India",
                "currency": "INR",
                "contract_version": "IN universal version",
            }
        },
    ),
    "POST /api/v1/publishers": lambda home, catalogue: (
        "post",
        "/publishers",
        {"json": {"name": "Tenant publisher", "app_package": "com.tenant.publisher", "country": "SG"}},
    ),
    "POST /api/v1/ad-spaces": lambda home, catalogue: (
        "post",
        "/ad-spaces",
        {
            "json": {
                "publisher_id": catalogue["publisher_id"],
                "name": "Tenant slot",
                "placement_type": "banner",
                "accepted_formats": ["interstitial_image"],
            }
        },
    ),
    "POST /api/v1/audiences/regions": lambda home, catalogue: (
        "post",
        "/audiences/regions",
        {"json": {"code": "TENANT", "name": "Tenant region"}},
    ),
    "PUT /api/v1/audiences/portrait-tags": lambda home, catalogue: (
        "put",
        "/audiences/portrait-tags",
        {"json": {"tag": "tenant.planted", "id_type": "gaid", "ids": ["38400000-8cf0-11bd-b23e-10b96e40000d"]}},
    ),
    "PUT /api/v1/audiences/package-categories": lambda home, catalogue: (
        "put",
        "/audiences/package-categories",
        {"json": {"package": "com.catalogue.pub1", "category": "finance"}},
    ),
    "POST /api/v1/finance/top-ups": lambda home, catalogue: (
        "post",
        "/finance/top-ups",
        {"json": {"account_id": home.account_id, "amount_micros": 1_000_000_000_000}},
    ),
    "POST /api/v1/finance/credit-lines": lambda home, catalogue: (
        "post",
        "/finance/credit-lines",
        {
            "json": {
                "account_id": home.account_id,
                "limit_micros": 1_000_000_000_000,
                "starts_on": _today(),
                "ends_on": _today(),
            }
        },
    ),
    "POST /api/v1/finance/refunds": lambda home, catalogue: (
        "post",
        "/finance/refunds",
        {"json": {"charge_id": "any-charge"}},
    ),
    "POST /api/v1/postbacks/process": lambda home, catalogue: ("post", "/postbacks/process", {}),
}


# ---------- ids of another tenant inside bodies and queries ----------

# refuse: must answer 4xx. filter: may answer 2xx, but shows nothing of the victim.
# batch: may answer 2xx, but no item succeeds.
Reference = Callable[[Tenant, Tenant], tuple[str, str, dict[str, Any]]]


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _week_ago() -> str:
    return (datetime.now(UTC).date() - timedelta(days=7)).isoformat()


def _materials(label: str, media: list[int]) -> dict[str, Any]:
    return {
        "titles": [f"{label} title"],
        "descriptions": ["Free to play"],
        "button_texts": ["Install"],
        "images": [media[0]],
        "icon": media[1],
    }


def _ad_group_body(campaign_id: int, **targeting: Any) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "name": "Intruder group",
        "placement_type": "interstitial",
        "bid_type": "cpc",
        "bid_micros": 100_000,
        "targeting": {"countries": ["SG"], **targeting},
    }


def _report(victim: Tenant) -> dict[str, Any]:
    return {"account_ids": [victim.account_id], "start_date": _week_ago(), "end_date": _today()}


REFERENCES: dict[str, tuple[str, Reference]] = {
    "add a webhook endpoint to the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/webhooks",
            {"json": {"account_id": victim.account_id, "url": "https://hooks.example.com/planted"}},
        ),
    ),
    "create a campaign in the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/campaigns",
            {
                "json": {
                    "account_id": victim.account_id,
                    "objective": "performance",
                    "name": "Planted",
                    "promotion_type": "non_download",
                    "landing_kind": "h5",
                    "landing_url": "https://example.com",
                }
            },
        ),
    ),
    "create an ad group in the victim's campaign": (
        "refuse",
        lambda home, victim: ("post", "/ad-groups", {"json": _ad_group_body(victim.id("campaign_id"))}),
    ),
    "target the victim's audience": (
        "refuse",
        lambda home, victim: (
            "post",
            "/ad-groups",
            {"json": _ad_group_body(home.id("campaign_id"), include_audience_ids=[victim.id("audience_id")])},
        ),
    ),
    "exclude the victim's audience": (
        "refuse",
        lambda home, victim: (
            "post",
            "/ad-groups",
            {"json": _ad_group_body(home.id("campaign_id"), exclude_audience_ids=[victim.ids["audience_id"][1]])},
        ),
    ),
    "edit an own ad group to target the victim's audience": (
        "refuse",
        lambda home, victim: (
            "patch",
            f"/ad-groups/{home.id('ad_group_id')}",
            {"json": {"targeting": {"countries": ["SG"], "include_audience_ids": [victim.id("audience_id")]}}},
        ),
    ),
    "copy an own ad group into the victim's campaign": (
        "refuse",
        lambda home, victim: (
            "post",
            f"/ad-groups/{home.id('ad_group_id')}/copy",
            {"json": {"campaign_id": victim.id("campaign_id")}},
        ),
    ),
    "create a creative in the victim's ad group": (
        "refuse",
        lambda home, victim: (
            "post",
            "/creatives",
            {
                "json": {
                    "ad_group_id": victim.id("ad_group_id"),
                    "name": "Planted",
                    "format": "interstitial_image",
                    "materials": _materials(home.label, home.ids["media_id"]),
                    "click_url": "https://example.com",
                }
            },
        ),
    ),
    "use the victim's media in an own creative": (
        "refuse",
        lambda home, victim: (
            "post",
            "/creatives",
            {
                "json": {
                    "ad_group_id": home.id("ad_group_id"),
                    "name": "Borrowed",
                    "format": "interstitial_image",
                    "materials": _materials(home.label, victim.ids["media_id"]),
                    "click_url": "https://example.com",
                }
            },
        ),
    ),
    "edit an own creative to use the victim's media": (
        "refuse",
        lambda home, victim: (
            "patch",
            f"/creatives/{home.ids['creative_id'][1]}",
            {"json": {"materials": _materials(home.label, victim.ids["media_id"])}},
        ),
    ),
    "preview in the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/creatives/preview",
            {
                "json": {
                    "account_id": victim.account_id,
                    "format": "interstitial_image",
                    "materials": _materials(home.label, victim.ids["media_id"]),
                }
            },
        ),
    ),
    "preview the victim's media": (
        "filter",
        lambda home, victim: (
            "post",
            "/creatives/preview",
            {
                "json": {
                    "account_id": home.account_id,
                    "format": "interstitial_image",
                    "materials": _materials(home.label, victim.ids["media_id"]),
                }
            },
        ),
    ),
    "upload media into the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/media",
            {
                "data": {"account_id": str(victim.account_id)},
                "files": {"file": ("planted.png", io.BytesIO(png(84, 84)), "image/png")},
            },
        ),
    ),
    "add an app to the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/apps",
            {"json": {"account_id": victim.account_id, "package_name": "com.planted.app", "name": "Planted"}},
        ),
    ),
    "upload an audience into the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/audiences/upload",
            {
                "content": id_file(gaids(1000, seed=99)),
                "params": {"account_id": victim.account_id, "name": "Planted", "region_code": "SG", "id_type": "gaid"},
            },
        ),
    ),
    "import an audience into the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/audiences/import",
            {
                "json": {
                    "account_id": victim.account_id,
                    "name": "Planted",
                    "region_code": "SG",
                    "id_type": "gaid",
                    "url": "http://127.0.0.1:9/ids.txt",
                }
            },
        ),
    ),
    "create a label audience in the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/audiences/labels",
            {
                "json": {
                    "account_id": victim.account_id,
                    "name": "Planted",
                    "region_code": "IN",
                    "rule": {"conditions": [{"kind": "installed_apps", "packages": ["com.example.game"]}]},
                }
            },
        ),
    ),
    "reach of the victim's audience": (
        "refuse",
        lambda home, victim: ("get", "/audiences/reach", {"params": {"include": [victim.id("audience_id")]}}),
    ),
    "reach excluding the victim's audience": (
        "refuse",
        lambda home, victim: (
            "get",
            "/audiences/reach",
            {"params": {"include": [home.id("audience_id")], "exclude": [victim.id("audience_id")]}},
        ),
    ),
    # Without audiences the estimate reads only the platform's population table, whoever the account is.
    "estimate naming the victim's account": (
        "filter",
        lambda home, victim: (
            "post",
            "/ad-groups/estimate",
            {"json": {"account_id": victim.account_id, "placement_type": "interstitial"}},
        ),
    ),
    "estimate for the victim's account with its audience": (
        "refuse",
        lambda home, victim: (
            "post",
            "/ad-groups/estimate",
            {
                "json": {
                    "account_id": victim.account_id,
                    "placement_type": "interstitial",
                    "targeting": {"include_audience_ids": [victim.id("audience_id")]},
                }
            },
        ),
    ),
    "estimate with the victim's audience": (
        "refuse",
        lambda home, victim: (
            "post",
            "/ad-groups/estimate",
            {
                "json": {
                    "placement_type": "interstitial",
                    "targeting": {"include_audience_ids": [victim.id("audience_id")]},
                }
            },
        ),
    ),
    "request a top-up of the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/finance/top-up-requests",
            {
                "data": {"account_id": str(victim.account_id), "amount_micros": "1000000"},
                "files": {"file": ("receipt.png", io.BytesIO(png(20, 20)), "image/png")},
            },
        ),
    ),
    "transfer to the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/finance/transfers",
            {"json": {"kind": "transfer", "sub_account_id": victim.account_id, "amount_micros": 1_000_000}},
        ),
    ),
    "reclaim from the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/finance/transfers",
            {"json": {"kind": "reclaim", "sub_account_id": victim.account_id, "amount_micros": 1_000_000}},
        ),
    ),
    "invite a user into the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/invitations",
            {"json": {"account_id": victim.account_id, "email": "planted@example.com", "account_role": "owner"}},
        ),
    ),
    "verdict agreement of the victim's app": (
        "refuse",
        lambda home, victim: ("get", "/attribution/verdict-agreement", {"params": {"app_id": victim.id("app_id")}}),
    ),
    "connect a partner for the victim's account": (
        "refuse",
        lambda home, victim: (
            "post",
            "/connectors",
            {"json": {"account_id": victim.account_id, "name": "Planted", "api_token": "planted-token"}},
        ),
    ),
    "report on the victim's account": ("refuse", lambda home, victim: ("get", "/reports", {"params": _report(victim)})),
    "download a report on the victim's account": (
        "refuse",
        lambda home, victim: ("get", "/reports/download", {"params": _report(victim)}),
    ),
    "report job on the victim's account": (
        "refuse",
        lambda home, victim: ("post", "/reports/jobs", {"json": _report(victim)}),
    ),
    "overview of the victim's account": (
        "refuse",
        lambda home, victim: ("get", "/overview", {"params": {"account_id": victim.account_id}}),
    ),
    "media center of the victim's account": (
        "refuse",
        lambda home, victim: (
            "get",
            "/media-center",
            {"params": {"account_id": victim.account_id, "start_date": _week_ago(), "end_date": _today()}},
        ),
    ),
    "operation log of the victim's account": (
        "refuse",
        lambda home, victim: ("get", "/operation-logs", {"params": {"account_id": victim.account_id}}),
    ),
    "operation log CSV of the victim's account": (
        "refuse",
        lambda home, victim: ("get", "/operation-logs/export.csv", {"params": {"account_id": victim.account_id}}),
    ),
    "pause the victim's campaigns in a batch": (
        "batch",
        lambda home, victim: (
            "post",
            "/campaigns/batch-status",
            {"json": {"ids": victim.ids["campaign_id"], "action": "pause"}},
        ),
    ),
    "delete the victim's ad groups in a batch": (
        "batch",
        lambda home, victim: (
            "post",
            "/ad-groups/batch-status",
            {"json": {"ids": victim.ids["ad_group_id"], "action": "delete"}},
        ),
    ),
    "batch-mutate the victim's objects": (
        "batch",
        lambda home, victim: (
            "post",
            "/batch",
            {
                "json": {
                    "partial_failure": True,
                    "operations": [
                        {
                            "object_type": "campaign",
                            "action": "update",
                            "id": victim.id("campaign_id"),
                            "body": {"name": "Hijacked"},
                        },
                        {"object_type": "ad_group", "action": "pause", "id": victim.id("ad_group_id")},
                        {"object_type": "creative", "action": "delete", "id": victim.id("creative_id")},
                        {
                            "object_type": "ad_group",
                            "action": "create",
                            "body": _ad_group_body(victim.id("campaign_id")),
                        },
                    ],
                }
            },
        ),
    ),
    "delete the victim's audiences in a batch": (
        "batch",
        lambda home, victim: (
            "post",
            "/audiences/batch-delete",
            {"json": {"ids": victim.ids["audience_id"], "partial_failure": True}},
        ),
    ),
}
for _path, _id_kind, _param in (
    ("/accounts", "account_id", "q"),
    ("/campaigns", "account_id", "account_id"),
    ("/campaigns", "campaign_id", "q"),
    ("/ad-groups", "account_id", "account_id"),
    ("/ad-groups", "campaign_id", "campaign_id"),
    ("/creatives", "account_id", "account_id"),
    ("/creatives", "ad_group_id", "ad_group_id"),
    ("/creatives", "campaign_id", "campaign_id"),
    ("/media", "account_id", "account_id"),
    ("/apps", "account_id", "account_id"),
    ("/audiences", "account_id", "account_id"),
    ("/audiences", "audience_id", "q"),
    ("/finance/top-up-requests", "account_id", "account_id"),
    ("/finance/credit-lines", "account_id", "account_id"),
    ("/finance/transfers", "account_id", "account_id"),
    ("/finance/transfers/export.csv", "account_id", "account_id"),
    ("/conversions", "app_id", "app_id"),
    ("/invitations", "account_id", "account_id"),
):
    REFERENCES[f"list {_path} by the victim's {_id_kind} as {_param}"] = (
        "filter",
        (lambda path, kind, param: lambda home, victim: ("get", path, {"params": {param: victim.id(kind)}}))(
            _path, _id_kind, _param
        ),
    )


def _as_call(call: tuple[str, str, dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    method, path, args = call
    return method, f"{API}{path}", args


def _reference_attack(world: World, intruder: Intruder, victim: Tenant) -> Iterator[Outcome]:
    ghost = victim.ghost()
    for name, (kind, reference) in REFERENCES.items():
        method, path, args = reference(intruder.home, victim)
        response = _call(world.api, intruder.actor, method, f"{API}{path}", args)
        outcome = Outcome(intruder.name, victim.label, name, f"{method.upper()} {API}{path}", response.status_code)
        missing = world.missing_answer(intruder, name, _as_call(reference(intruder.home, ghost)))
        if response.status_code != missing:
            outcome.problems.append(f"ids nobody has answer {missing}: the two can be told apart")
        if kind == "refuse" and is_success(response):
            outcome.problems.append("the request succeeded")
        if kind == "batch" and is_success(response):
            out = response.json()
            if any(r.get("ok") for r in out.get("results", [])) or out.get("deleted"):
                outcome.problems.append("an item of the batch succeeded")
        if response.status_code >= 500:
            outcome.problems.append("the request failed on the server")
        if victim.shows_in(response) or any(url.encode() in response.content for url in victim.media_urls):
            outcome.problems.append(f"the response shows {victim.label}'s data")
        yield outcome


# ---------- lists without path parameters ----------

# Each list and the id kind its items carry (None: only the names and remarks are checked). Report jobs carry
# no names, only ids.
LISTS: tuple[tuple[str, str | None], ...] = (
    (f"{API}/accounts", "account_id"),
    (f"{API}/auth/api-keys", "key_id"),
    (f"{API}/campaigns?limit=500", "campaign_id"),
    (f"{API}/ad-groups?limit=500", "ad_group_id"),
    (f"{API}/creatives?limit=500", "creative_id"),
    (f"{API}/media?limit=500", "media_id"),
    (f"{API}/apps?limit=500", "app_id"),
    (f"{API}/audiences?limit=500", "audience_id"),
    (f"{API}/finance/top-up-requests?limit=500", "request_id"),
    (f"{API}/finance/credit-lines?limit=500", "line_id"),
    (f"{API}/webhooks", "endpoint_id"),
    (f"{API}/finance/transfers?limit=500", None),
    (f"{API}/finance/transfers/export.csv", None),
    (f"{API}/operation-logs?limit=500", None),
    (f"{API}/operation-logs/export.csv", None),
    (f"{API}/review/rejections?limit=500", None),
    (f"{API}/reports/jobs?limit=500", "job_id"),
    (f"{API}/connectors", "connection_id"),
    (f"{API}/invitations?limit=500", "invitation_id"),
)
# Lists whose rows carry no tenant's names: nothing must leak, but there is nothing of one's own to find.
QUIET_LISTS: tuple[str, ...] = (
    f"{API}/conversions",
    f"{API}/overview",
    f"{API}/auth/me",
    f"{API}/attribution/verdict-agreement",
    f"{API}/auth/sessions",
    f"{API}/users",
    f"{API}/notifications",
    f"{API}/connectors/columns/by-campaign-day?date_from={_week_ago()}&date_to={_today()}",
    f"{API}/reports?start_date={_week_ago()}&end_date={_today()}&dimensions=campaign",
    f"{API}/reports/download?start_date={_week_ago()}&end_date={_today()}&dimensions=campaign",
    f"{API}/reports/filters",
    f"{API}/media-center?start_date={_week_ago()}&end_date={_today()}",
    # The platform catalogue: the same for everyone, and nothing of any tenant in it.
    f"{API}/settlement-rules",
    f"{API}/publishers",
    f"{API}/ad-spaces",
    f"{API}/device-populations",
    f"{API}/creative-formats",
    f"{API}/audiences/regions",
    f"{API}/audiences/package-categories",
    f"{API}/fx-rates",
    f"{API}/audiences/portrait-tags",
    f"{API}/connectors/partners",
)
STAFF_LISTS: tuple[str, ...] = (
    f"{API}/review/queue",
    f"{API}/tracking/invalid",
    f"{API}/postbacks/rejected",
    f"{API}/pipeline/status",
)
# Operations that name no existing object at all, with the reason.
NO_OBJECT: dict[str, str] = {
    "POST /api/v1/auth/login": "signs in",
    "POST /api/v1/auth/register": "opens a new account of the caller's own",
    "POST /api/v1/auth/logout": "revokes the token it is sent with",
    "POST /api/v1/auth/api-keys": "makes a key for the caller's own user",
    "POST /api/v1/auth/password": "changes the caller's own password",
    "POST /api/v1/auth/password-reset": "mails a reset link to whoever owns the address",
    "POST /api/v1/auth/password-reset/confirm": "acts on the user the mailed token names",
    "POST /api/v1/auth/verify-email": "verifies the user the mailed token names",
    "POST /api/v1/auth/verify-email/resend": "mails the caller's own verification link",
    "POST /api/v1/accounts": "an agency's new account is always its own sub-account; only account managers name "
    "a parent agency",
    "POST /api/v1/notifications/read-all": "marks the caller's own notifications read",
    "POST /api/v1/invitations/accept": "acts on the invitation the mailed token names",
}


def _listed_ids(response: Response) -> set[int]:
    body = response.json()
    items = body["items"] if isinstance(body, dict) else body
    return {int(item["id"]) for item in items}


# ---------- tests ----------


def test_every_parameterised_route_is_in_the_table(world: World) -> None:
    names = {operation.name for operation in world.operations if operation.params}
    assert len(names) > 70 and {"GET /api/v1/campaigns/{campaign_id}", "PUT /api/v1/fx-rates/{currency}"} <= names
    missing = sorted(
        f"{operation.name} (path parameters {sorted(unmapped(operation))})"
        for operation in world.operations
        if unmapped(operation)
    )
    assert not missing, (
        "routes whose path parameters the isolation table does not map; add each parameter "
        "to TENANT_PARAMS or CATALOGUE_PARAMS in tests/e2e/tenancy.py:\n" + "\n".join(missing)
    )
    stale = sorted(set(KNOWN_BUGS) - names - set(REFERENCES))
    assert not stale, f"KNOWN_BUGS names routes that no longer exist: {stale}"


def test_every_route_without_path_parameters_is_checked_too(world: World) -> None:
    reads = {f"GET {path.split('?')[0]}" for path in (*(p for p, _ in LISTS), *QUIET_LISTS, *STAFF_LISTS)}
    checked = reads | {o.path for o in world.reference_outcomes} | set(STAFF_ACTIONS) | set(NO_OBJECT)
    unchecked = sorted(o.name for o in world.operations if not o.params and o.name not in checked)
    assert not unchecked, (
        "routes no isolation check calls; add each to LISTS, QUIET_LISTS, STAFF_LISTS, "
        "REFERENCES, STAFF_ACTIONS or NO_OBJECT:\n" + "\n".join(unchecked)
    )


def test_owners_and_their_agencies_reach_every_route_of_their_objects(world: World) -> None:
    """The control: the ids are right and the routes work, so the 404s below come from tenancy alone."""
    failed = [
        f"{key} -> {response.status_code}: {response.text[:200]}"
        for key, response in world.owner_reads.items()
        if not is_success(response)
    ]
    assert not failed, "\n".join(failed)
    read_routes = {o.name for o in world.operations if o.method == "get" and o.tenant_owned}
    assert len(read_routes) >= 25


def status_matrix(outcomes: Iterator[Outcome]) -> str:
    """Each operation with the statuses its calls got, and who made them."""
    seen: dict[str, dict[int, set[str]]] = {}
    for o in outcomes:
        seen.setdefault(o.operation, {}).setdefault(o.status, set()).add(o.intruder)
    return "\n".join(
        f"{operation}: " + ", ".join(f"{status} ({', '.join(sorted(who))})" for status, who in sorted(statuses.items()))
        for operation, statuses in sorted(seen.items())
    )


def _unexpected(outcomes: list[Outcome]) -> list[str]:
    return [str(o) for o in outcomes if o.problems and o.operation not in KNOWN_BUGS]


def test_no_tenant_reads_or_changes_another_tenants_objects_by_id(world: World) -> None:
    print(status_matrix(world.outcomes()))  # shown with -rP, and beside any failure
    assert {o.operation for o in world.path_outcomes} == {o.name for o in world.operations if o.tenant_owned}, (
        "every tenant route was called"
    )
    problems = _unexpected(world.path_outcomes)
    assert not problems, f"{len(problems)} isolation failures:\n" + "\n".join(problems)
    mutations = {o.operation for o in world.path_outcomes if not o.operation.startswith("GET ")}
    assert len(mutations) >= 30
    assert world.pulls_by_intruders == [], "a partner pull ran for someone else's connection"


def test_tenants_read_but_never_change_the_catalogue(world: World) -> None:
    called = {o.operation for o in world.catalogue_outcomes}
    assert called == {o.name for o in world.operations if o.catalogue_owned} | set(STAFF_ACTIONS)
    assert any(o.status == 200 for o in world.catalogue_outcomes if o.operation.startswith("GET "))
    problems = _unexpected(world.catalogue_outcomes)
    assert not problems, "\n".join(problems)


def test_ids_of_another_tenant_in_bodies_and_queries_reach_nothing(world: World) -> None:
    assert {o.operation for o in world.reference_outcomes} == set(REFERENCES)
    problems = _unexpected(world.reference_outcomes)
    assert not problems, f"{len(problems)} isolation failures:\n" + "\n".join(problems)


def test_every_object_is_unchanged_after_the_attempts(world: World) -> None:
    assert len(world.owner_reads) > 150
    assert not world.changed, "objects changed by someone else's requests:\n" + "\n".join(world.changed)


def test_lists_show_a_tenant_its_own_objects_and_an_agency_only_its_sub_accounts(world: World) -> None:
    viewers = {name: (intruder.actor, intruder.home) for name, intruder in world.intruders.items()}
    problems = []
    for viewer, (actor, home) in viewers.items():
        others = [t for t in world.tenants.values() if t is not home]
        for path, kind in LISTS:
            response = world.api.client.get(path, headers=actor.headers)
            if response.status_code != 200:
                problems.append(f"{viewer}: {path} -> {response.status_code}")
                continue
            if kind != "job_id" and not home.shows_in(response):
                problems.append(f"{viewer}: {path} misses its own {home.label}")
            problems += [f"{viewer}: {path} shows {other.label}" for other in others if other.shows_in(response)]
            if kind is not None:
                listed = _listed_ids(response)
                if not set(home.ids[kind]) <= listed:
                    problems.append(f"{viewer}: {path} misses its own ids {sorted(set(home.ids[kind]) - listed)}")
                problems += [
                    f"{viewer}: {path} lists {other.label}'s ids {sorted(listed & set(other.ids[kind]))}"
                    for other in others
                    if listed & set(other.ids[kind])
                ]
        for path in QUIET_LISTS:
            response = world.api.client.get(path, headers=actor.headers)
            if response.status_code != 200:
                problems.append(f"{viewer}: {path} -> {response.status_code}: {response.text[:200]}")
            problems += [f"{viewer}: {path} shows {other.label}" for other in others if other.shows_in(response)]
        for path in STAFF_LISTS:
            status = world.api.client.get(path, headers=actor.headers).status_code
            if status != 403:
                problems.append(f"{viewer}: staff list {path} -> {status}")
    assert not problems, "\n".join(problems)
    # The admin, for contrast, sees every tenant.
    everyone = world.api.client.get(f"{API}/campaigns?limit=500", headers=world.admin.headers)
    assert all(tenant.shows_in(everyone) for tenant in world.tenants.values())


@pytest.mark.parametrize(
    "operation",
    [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason)) for name, reason in KNOWN_BUGS.items()],
)
def test_known_isolation_bug(world: World, operation: str) -> None:
    outcomes = [o for o in world.outcomes() if o.operation == operation]
    assert outcomes, f"{operation} was never called"
    failing = [str(o) for o in outcomes if o.problems]
    assert not failing, "\n".join(failing)
