"""Apps & tracking, audiences, publishers & ad spaces, announcements and top-up requests through the console."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import users
from adstack.accounts.models import Account
from adstack.apps.models import App
from adstack.audiences.models import Audience
from adstack.finance import service as finance
from adstack.inventory.models import AdSpace, Publisher
from tests.console.support import csrf_from, png_bytes, post_form, register, sign_in


def _advertiser(client: TestClient, session: Session, n: int) -> int:
    register(client, n)
    account_id = session.scalar(select(Account.id).where(Account.contact_email == f"ops{n}@example.com"))
    assert account_id is not None
    return account_id


def _admin(client: TestClient, session: Session, email: str) -> TestClient:
    users.create_admin(session, email=email, password="admin-password")
    session.commit()
    admin = TestClient(client.app)
    sign_in(admin, email, "admin-password")
    return admin


def test_app_integration_pages_for_every_partner(client: TestClient, session: Session):
    _advertiser(client, session, 41)
    created = post_form(
        client,
        "/console/apps",
        "/console/apps",
        {
            "name": "Summer Cup",
            "package_name": "com.summer.cup",
            "store": "google_play",
            "partner": "appsflyer",
            "partner_link_id": "id123",
            "click_lookback_days": "7",
            "view_through_enabled": "on",
        },
    )
    assert created.status_code == 303, created.text[-1500:]
    app_id = session.scalar(select(App.id))
    for partner, click_parameter in (
        ("appsflyer", "clickid"),
        ("appmetrica", "click_id"),
        ("adjust", ""),
        ("tenjin", ""),
        ("branch", ""),
        ("singular", ""),
        ("kochava", ""),
        ("mytracker", ""),
        ("airbridge", "click_id"),
    ):
        page = client.get(f"/console/apps/{app_id}?partner={partner}")
        assert f'id="integration" data-partner="{partner}"' in page.text
        assert 'id="tracking-link"' in page.text and "/track/m3rd/v1.0" in page.text
        assert page.text.count("<li>") >= 3
        if click_parameter:
            link = page.text.split('id="tracking-link">')[1].split("</div>")[0]
            assert f"{click_parameter}=" in link
    saved = post_form(
        client,
        f"/console/apps/{app_id}",
        f"/console/apps/{app_id}/mappings",
        {"mappings": "af_purchase = PURCHASE\nlevel_10 = LEVEL_ACHIEVED"},
    )
    assert saved.status_code == 303
    refused = post_form(
        client,
        f"/console/apps/{app_id}",
        f"/console/apps/{app_id}/mappings",
        {"mappings": "af_purchase = NOT_AN_EVENT"},
    )
    assert refused.status_code == 422 and "NOT_AN_EVENT" in refused.text


def test_audience_upload_report_and_refusal(client: TestClient, session: Session):
    _advertiser(client, session, 42)
    page = client.get("/console/audiences")
    region = page.text.split('id="a-region" name="region_code"><option value="')[1].split('"')[0]
    ids = "\n".join(str(uuid.UUID(int=i + 1)) for i in range(1200)) + "\nnot-an-id\n"
    done = client.post(
        "/console/audiences",
        data={"name": "Payers", "region_code": region, "id_type": "gaid", "csrf_token": csrf_from(page.text)},
        files={"file": ("payers.txt", ids.encode(), "text/plain")},
    )
    assert done.status_code == 200 and 'id="upload-report"' in done.text and "1,200" in done.text
    assert session.scalars(select(Audience)).one().size == 1200
    too_few = client.post(
        "/console/audiences",
        data={"name": "Few", "region_code": region, "id_type": "gaid", "csrf_token": csrf_from(page.text)},
        files={"file": ("few.txt", b"\n".join(str(uuid.UUID(int=i + 1)).encode() for i in range(999)), "text/plain")},
    )
    assert too_few.status_code == 422
    session.expire_all()
    assert [a.name for a in session.scalars(select(Audience))] == ["Payers"]


@pytest.mark.postgresql  # announcements: the console's own table, translations in JSON
def test_publishers_ad_spaces_and_announcements_are_staff_only(client: TestClient, session: Session):
    _advertiser(client, session, 43)
    assert client.get("/console/admin/inventory").status_code == 403
    page = client.get("/console/announcements")
    assert (
        client.post("/console/announcements", data={"title": "x", "csrf_token": csrf_from(page.text)}).status_code
        == 403
    )
    admin = _admin(client, session, "ops43@example.org")
    assert (
        post_form(
            admin,
            "/console/admin/inventory",
            "/console/admin/inventory/publishers",
            {"name": "Mi Video", "app_package": "com.miui.video", "country": "sg"},
        ).status_code
        == 303
    )
    publisher_id = session.scalar(select(Publisher.id))
    assert (
        post_form(
            admin,
            "/console/admin/inventory",
            "/console/admin/inventory/ad-spaces",
            {
                "publisher_id": str(publisher_id),
                "space_name": "Pause interstitial",
                "placement_type": "interstitial",
                "accepted_formats": "interstitial_image",
            },
        ).status_code
        == 303
    )
    assert session.scalars(select(AdSpace)).one().accepted_formats == ["interstitial_image"]
    assert (
        post_form(
            admin,
            "/console/announcements",
            "/console/announcements",
            {"title": "Review hours over the holiday", "body": "Mon-Fri as usual."},
        ).status_code
        == 303
    )
    assert "Review hours over the holiday" in client.get("/console/").text


@pytest.mark.postgresql  # announcements: the console's own table, translations in JSON
def test_announcements_show_in_the_visitors_language(client: TestClient, session: Session):
    _advertiser(client, session, 45)
    admin = _admin(client, session, "ops45@example.org")
    refused = post_form(
        admin, "/console/announcements", "/console/announcements", {"title": "Holiday hours", "body_zh": "只有正文"}
    )
    assert refused.status_code == 422 and 'data-error-for="title_zh"' in refused.text
    assert 'value="Holiday hours"' in refused.text
    assert (
        post_form(
            admin,
            "/console/announcements",
            "/console/announcements",
            {
                "title": "Holiday hours",
                "body": "Reviews pause on Monday.",
                "title_zh": "假期审核时间",
                "body_zh": "周一暂停审核。",
            },
        ).status_code
        == 303
    )

    english = client.get("/console/announcements").text
    assert "Holiday hours" in english and "Reviews pause on Monday." in english and "假期审核时间" not in english
    assert (
        post_form(client, "/console/account", "/console/language", {"language": "zh", "next": "/console/"}).status_code
        == 303
    )
    assert "假期审核时间" in client.get("/console/").text
    chinese = client.get("/console/announcements").text
    assert "周一暂停审核。" in chinese and "Holiday hours" not in chinese


def test_prepay_top_up_request_confirmed_by_an_account_manager(client: TestClient, session: Session):
    account_id = _advertiser(client, session, 44)
    page = client.get("/console/finance")
    filed = client.post(
        "/console/finance/top-up-requests",
        data={"request_account_id": str(account_id), "request_amount": "250.50", "csrf_token": csrf_from(page.text)},
        files={"proof": ("pop.png", png_bytes(20, 20), "image/png")},
        follow_redirects=False,
    )
    assert filed.status_code == 303, filed.text[-1500:]
    admin = _admin(client, session, "money44@example.org")
    queue = admin.get("/console/admin/top-ups")
    request_id = queue.text.split('data-request="')[1].split('"')[0]
    assert (
        post_form(
            admin, "/console/admin/top-ups", f"/console/admin/top-ups/{request_id}", {"decision": "confirm"}
        ).status_code
        == 303
    )
    assert finance.balance_micros(session, account_id) == 250_500_000
    records = client.get("/console/finance")
    assert 'data-record-type="top_up"' in records.text
    csv = client.get("/console/finance/export.csv")
    assert "top_up" in csv.text and "250.5" in csv.text
