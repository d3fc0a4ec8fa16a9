"""Overviews per role: an agency sees its sub-accounts added up and one row each; staff see platform spend,
fill rate, pipeline lag, the top accounts and how long the review queue has waited."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from adstack.review.models import ReviewItem
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, png, publisher
from tests.console.support import sign_in
from tests.support import Actor, Api, expect


def _spend(account_id: int, campaign_id: int, micros: int, tag: str) -> list[Event]:
    now = utcnow() - timedelta(minutes=1)
    common = {
        "occurred_at": now,
        "account_id": account_id,
        "campaign_id": campaign_id,
        "country": "ID",
        "objective": "performance",
    }
    return [
        Event(event_id=f"imp-{tag}", event_type=EventType.IMPRESSION, **common),
        Event(event_id=f"chg-{tag}", event_type=EventType.CHARGE, cost_micros=micros, **common),
    ]


def _approved_creative(api: Api, agency: Actor, admin: Actor, account_id: int, ad_group_id: int) -> None:
    media = expect(
        api.client.post(
            "/api/v1/media",
            headers=agency.headers,
            data={"account_id": str(account_id)},
            files={"file": ("banner.png", png(640, 100))},
        ),
        201,
    )
    made = expect(
        api.client.post(
            "/api/v1/creatives",
            headers=agency.headers,
            json={
                "ad_group_id": ad_group_id,
                "name": "Banner",
                "format": "image_640x100",
                "materials": {"images": [media["id"]]},
                "click_url": "https://example.com/app",
            },
        ),
        201,
    )
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=agency.headers), 200)
    expect(
        api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )


def _row(html: str, marker: str) -> str:
    match = re.search(rf"<tr {marker}>(.*?)</tr>", html, re.S)
    assert match, marker
    return re.sub(r"\s+", " ", match.group(1))


def test_agency_overview_adds_up_its_sub_accounts(api: Api, client: TestClient, session: Session, settings: Settings):
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    first = api.sub_account(agency, admin, company_name="Sub One Pte. Ltd.")
    second = api.sub_account(agency, admin, company_name="Sub Two Pte. Ltd.")
    ledger(session, first, 100_000_000)
    ledger(session, second, 30_000_000)
    ad_space(api, admin, publisher(api, admin)["id"])  # somewhere for the banner to serve
    first_campaign = campaign(api, agency, account_id=first)
    serving = approved_ad_group(api, agency, admin, first_campaign["id"])
    _approved_creative(api, agency, admin, first, serving["id"])
    assert (
        expect(api.client.get(f"/api/v1/ad-groups/{serving['id']}", headers=agency.headers), 200)["serving_status"]
        == "eligible"
    )
    second_campaign = campaign(api, agency, account_id=second)
    store = get_event_store(settings)
    store.append(_spend(first, first_campaign["id"], 2_500_000, "first"))
    store.append(_spend(second, second_campaign["id"], 1_000_000, "second"))
    store.flush()

    sign_in(client, agency.email, "correct horse battery")
    page = client.get("/console/")
    assert page.status_code == 200
    html = page.text
    assert 'id="agency-overview"' in html
    one, two = _row(html, f'data-sub-account="{first}"'), _row(html, f'data-sub-account="{second}"')
    assert "Sub One" in one and "$100.00" in one and "$2.50" in one and re.search(r">\s*1\s*</td>\s*$", one)
    assert "Sub Two" in two and "$30.00" in two and "$1.00" in two and re.search(r">\s*0\s*</td>\s*$", two)
    total = re.search(r'data-sub-total="USD">(.*?)</div></div>', html, re.S)
    assert total and "$3.50" in total.group(1) and "$130.00" in total.group(1)
    # The agency's own spend tile counts what its sub-accounts spent today.
    tile = re.search(r'id="tile-spend">(.*?)</div></div>', html, re.S)
    assert tile and "$3.50" in tile.group(1)


def test_admin_overview_shows_platform_figures(api: Api, client: TestClient, session: Session, settings: Settings):
    admin = api.admin()
    big = api.approved_account(admin, company_name="Big Spender Ltd.")
    small = api.approved_account(admin, company_name="Small Spender Ltd.")
    big_campaign, small_campaign = campaign(api, big), campaign(api, small)
    store = get_event_store(settings)
    store.append(_spend(big.account_id or 0, big_campaign["id"], 9_000_000, "big"))
    store.append(_spend(small.account_id or 0, small_campaign["id"], 1_000_000, "small"))
    store.flush()
    # An ad group submitted 30 hours ago and still waiting.
    group = api.client.post(
        "/api/v1/ad-groups",
        headers=small.headers,
        json={
            "campaign_id": small_campaign["id"],
            "name": "Waiting",
            "placement_type": "banner",
            "bid_type": "cpc",
            "bid_micros": 200_000,
            "targeting": {"countries": ["ID"]},
        },
    ).json()
    api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=small.headers)
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.object_id == group["id"], ReviewItem.object_type == "ad_group")
        .values(submitted_at=utcnow() - timedelta(hours=30))
    )
    session.commit()

    sign_in(client, admin.email, "admin-password")
    html = client.get("/console/").text
    assert 'id="platform-overview"' in html
    spend = re.search(r'id="tile-platform-spend">(.*?)</div></div>', html, re.S)
    assert spend and "$10.00" in spend.group(1)
    top = re.search(r'id="top-accounts"[^>]*>(.*?)</table>', html, re.S)
    assert top and top.group(1).index("Big Spender") < top.group(1).index("Small Spender")
    queue = re.search(r'id="tile-review-age">(.*?)</div></div>', html, re.S)
    assert queue and re.search(r"\b1 waiting", queue.group(1)) and re.search(r"3\d(\.\d)? h ago", queue.group(1))
    assert 'id="tile-fill-rate"' in html and 'id="tile-pipeline-lag"' in html


def test_overview_in_chinese_has_no_english_labels(api: Api, client: TestClient, session: Session):
    admin = api.admin()
    sign_in(client, admin.email, "admin-password")
    client.cookies.set("adstack_lang", "zh", path="/console")
    html = client.get("/console/").text
    section = re.search(r'<section id="platform-overview">(.*?)</section>', html, re.S)
    assert section
    text = re.sub(r"<[^>]+>", " ", section.group(1))
    assert "平台" in text and not re.search(r"\b(Spend|Fill rate|Pipeline lag|Review queue|Top accounts)\b", text)
