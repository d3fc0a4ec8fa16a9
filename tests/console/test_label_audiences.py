"""Label audiences through the console: the rule form builds from the device profiles at once, edits rebuild,
refusals name the input that holds the bad value, and another advertiser's audience is not found."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Account
from adstack.audiences import profiles
from adstack.audiences import service as audiences
from adstack.audiences.ids import device_key
from adstack.audiences.models import Audience, PackageCategory
from adstack.core.timeutil import utcnow
from tests.console.support import csrf_from, register, sign_in
from tests.support import Api

GAME, BANK = "com.example.game", "com.example.bank"
HEAVY_PLAYER, LIGHT_PLAYER, BANKER = (str(uuid.UUID(int=n, version=4)) for n in (11, 12, 13))


def _profiles(session: Session) -> None:
    session.add_all(
        [PackageCategory(package=GAME, category="games"), PackageCategory(package=BANK, category="finance")]
    )
    for gaid, packages, usage in (
        (HEAVY_PLAYER, [GAME], {GAME: 3600}),
        (LIGHT_PLAYER, [GAME], {GAME: 300}),
        (BANKER, [BANK], {BANK: 600}),
    ):
        profiles.record_device_profile(
            session, gaid=gaid, installed_packages=packages, usage=usage, seen_at=utcnow(), country="IN"
        )  # the first region offered is India's
    session.commit()


def _post(client: TestClient, page: str, action: str, data: dict[str, Any]) -> Any:
    form = client.get(page)
    assert form.status_code == 200, form.text[:500]
    return client.post(action, data={**data, "csrf_token": csrf_from(form.text)}, follow_redirects=False)


def _signed_up(client: TestClient, session: Session, n: int) -> int:
    register(client, n)
    account_id = session.scalar(select(Account.id).where(Account.contact_email == f"ops{n}@example.com"))
    assert account_id is not None
    return account_id


def _region(client: TestClient) -> str:
    page = client.get("/console/audiences/labels/new")
    return page.text.split('name="region_code"><option value="')[1].split('"')[0]


def test_a_rule_typed_in_the_form_is_built_and_rebuilt_when_edited(client: TestClient, session: Session) -> None:
    account_id = _signed_up(client, session, 61)
    _profiles(session)
    page = client.get("/console/audiences/labels/new")
    assert 'value="games"' in page.text and 'value="finance"' in page.text  # categories from the package table

    created = _post(
        client,
        "/console/audiences/labels/new",
        "/console/audiences/labels/new",
        {
            "name": "Keen players",
            "region_code": _region(client),
            "installed_categories": ["games"],
            "usage_package": GAME,
            "usage_min_minutes": "10",
            "usage_within_days": "7",
        },
    )
    assert created.status_code == 303, created.text[:2000]
    audience = session.scalars(select(Audience).where(Audience.account_id == account_id)).one()
    assert (audience.kind, audience.status, audience.size) == ("label", "ready", 1)
    assert audience.rule == {
        "seen_within_days": 30,
        "conditions": [
            {"kind": "installed_categories", "categories": ["games"], "match": "any"},
            {
                "kind": "usage_time",
                "package": GAME,
                "category": None,
                "within_days": 7,
                "min_seconds": 600,
                "max_seconds": None,
            },
        ],
    }
    index = audiences.load_audience_index(session)
    assert index.contains(audience.id, device_key(HEAVY_PLAYER))
    assert not index.contains(audience.id, device_key(LIGHT_PLAYER))

    built_version = audience.version
    edit = client.get(f"/console/audiences/{audience.id}/edit")
    assert edit.status_code == 200
    assert 'name="installed_categories" value="games" checked' in edit.text
    assert 'name="usage_min_minutes" type="number" min="0" value="10"' in edit.text

    edited = _post(
        client,
        f"/console/audiences/{audience.id}/edit",
        f"/console/audiences/{audience.id}/edit",
        {
            "name": "Casual players",
            "region_code": audience.region_code,
            "installed_categories": ["games"],
            "usage_package": GAME,
            "usage_max_minutes": "10",
        },
    )
    assert edited.status_code == 303, edited.text[:2000]
    session.expire_all()
    rebuilt = session.get(Audience, audience.id)
    assert rebuilt is not None
    assert (rebuilt.name, rebuilt.size, rebuilt.version) == ("Casual players", 1, built_version + 1)
    index = audiences.load_audience_index(session)
    assert index.contains(audience.id, device_key(LIGHT_PLAYER))
    assert not index.contains(audience.id, device_key(HEAVY_PLAYER))


def test_refusals_name_the_input_and_leave_nothing_behind(client: TestClient, session: Session) -> None:
    _signed_up(client, session, 62)
    _profiles(session)
    region = _region(client)
    cases = [
        ({}, "conditions"),
        ({"installed_apps": "not a package"}, "installed_apps"),
        ({"usage_package": GAME, "usage_min_minutes": "30", "usage_max_minutes": "5"}, "usage"),
        ({"usage_package": GAME, "usage_min_minutes": "ten"}, "usage_min_minutes"),
        ({"active_in_apps": GAME, "active_within_days": "400"}, "active_within_days"),
        ({"installed_apps": GAME, "seen_within_days": "0"}, "seen_within_days"),
    ]
    for fields, refused_input in cases:
        answer = _post(
            client,
            "/console/audiences/labels/new",
            "/console/audiences/labels/new",
            {"name": "Refused", "region_code": region, **fields},
        )
        assert answer.status_code == 422, (fields, answer.status_code)
        assert f'data-error-for="{refused_input}"' in answer.text, (fields, answer.text[:3000])
        assert 'value="Refused"' in answer.text  # what was typed is kept
    assert session.scalars(select(Audience)).all() == []


def test_another_advertisers_audience_is_not_found(client: TestClient, session: Session) -> None:
    _signed_up(client, session, 63)
    _profiles(session)
    created = _post(
        client,
        "/console/audiences/labels/new",
        "/console/audiences/labels/new",
        {"name": "Bankers", "region_code": _region(client), "installed_apps": BANK},
    )
    assert created.status_code == 303
    audience_id = session.scalars(select(Audience.id)).one()

    other = TestClient(client.app)
    register(other, 64)
    assert other.get(f"/console/audiences/{audience_id}/edit").status_code == 404
    page = other.get("/console/audiences")
    answer = other.post(
        f"/console/audiences/{audience_id}/edit",
        follow_redirects=False,
        data={"name": "Taken", "region_code": "IN", "installed_apps": BANK, "csrf_token": csrf_from(page.text)},
    )
    assert answer.status_code == 404
    session.expire_all()
    assert session.scalars(select(Audience.name)).one() == "Bankers"


def test_an_agency_builds_audiences_for_its_sub_accounts_only(client: TestClient, session: Session) -> None:
    api = Api(client, session)
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub_account = api.sub_account(agency, admin)
    others_sub = api.sub_account(api.approved_account(admin, type="agency"), admin)
    _profiles(session)
    viewer = TestClient(client.app)
    assert sign_in(viewer, agency.email, "correct horse battery").status_code == 303
    form = viewer.get("/console/audiences/labels/new").text
    assert f'<option value="{sub_account}"' in form and f'<option value="{others_sub}"' not in form

    region = _region(viewer)
    built = _post(
        viewer,
        "/console/audiences/labels/new",
        "/console/audiences/labels/new",
        {"name": "Sub bankers", "region_code": region, "installed_apps": BANK, "account_id": str(sub_account)},
    )
    assert built.status_code == 303
    assert session.scalars(select(Audience.account_id)).one() == sub_account

    foreign = _post(
        viewer,
        "/console/audiences/labels/new",
        "/console/audiences/labels/new",
        {"name": "Foreign", "region_code": region, "installed_apps": BANK, "account_id": str(others_sub)},
    )
    assert foreign.status_code == 404  # another agency's account is not revealed
    uploaded = viewer.post(
        "/console/audiences",
        data={
            "name": "Foreign file",
            "region_code": region,
            "id_type": "gaid",
            "account_id": str(others_sub),
            "csrf_token": csrf_from(viewer.get("/console/audiences").text),
        },
        files={"file": ("ids.txt", "\n".join(str(uuid.UUID(int=i + 1)) for i in range(1000)).encode(), "text/plain")},
    )
    assert uploaded.status_code == 404
    session.expire_all()
    assert session.scalars(select(Audience.name)).all() == ["Sub bankers"]


def test_an_audience_from_partner_postbacks_is_built_from_the_form(client: TestClient, session: Session) -> None:
    """The form offers the account's own apps and the events; the rule it builds is the API's `converted`
    condition, and another account's app is refused on its input."""
    from adstack.apps.models import App

    account_id = _signed_up(client, session, 64)
    other_id = _signed_up(TestClient(client.app), session, 65)
    own = App(account_id=account_id, package_name="com.example.shop", name="Example Shop", partner="appsflyer")
    theirs = App(account_id=other_id, package_name="com.example.rival", name="Rival", partner="adjust")
    session.add_all([own, theirs])
    session.commit()
    page = client.get("/console/audiences/labels/new").text
    assert f'name="converted_apps" value="{own.id}"' in page and f'value="{theirs.id}"' not in page
    assert 'name="converted_events" value="PURCHASE"' in page

    fields = {"name": "Buyers", "region_code": _region(client), "converted_apps": [str(own.id)],
              "converted_events": ["PURCHASE"], "converted_within_days": "60"}
    created = _post(client, "/console/audiences/labels/new", "/console/audiences/labels/new", fields)
    assert created.status_code == 303, created.text[:2000]
    audience = session.scalars(select(Audience).where(Audience.account_id == account_id)).one()
    assert audience.rule == {"seen_within_days": 30, "conditions": [
        {"kind": "converted", "app_ids": [own.id], "events": ["PURCHASE"], "within_days": 60}]}

    refused = _post(client, "/console/audiences/labels/new", "/console/audiences/labels/new",
                    {**fields, "name": "Rival buyers", "converted_apps": [str(theirs.id)]})
    assert refused.status_code == 422
    assert 'data-error-for="converted_apps"' in refused.text.split('id="converted"')[1]
