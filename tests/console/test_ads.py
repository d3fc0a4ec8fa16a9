"""Ad management through the console over HTTP: the three creation steps, material checks, the list's
batch actions, quick edit, copy and cascading delete."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth as account_auth
from adstack.accounts import service as accounts
from adstack.accounts import users as account_users
from adstack.accounts.models import Account
from adstack.campaigns.models import AdGroup, Campaign
from adstack.creatives.models import Creative
from adstack.oplog.models import ChangeEvent
from adstack.review.models import ReviewStatus
from tests.console.support import csrf_from, png_bytes, post_form, register, sign_in


def _approved_advertiser(client: TestClient, session: Session, n: int) -> int:
    register(client, n)
    account_id = session.scalar(select(Account.id).where(Account.contact_email == f"ops{n}@example.com"))
    assert account_id is not None
    reviewer = account_auth.principal_for(
        account_users.create_admin(session, email=f"boss{n}@example.org", password="admin-password")
    )
    accounts.review_account(session, reviewer, account_id, approve=True)
    session.commit()
    return account_id


def _create_campaign_and_ad_group(client: TestClient, session: Session) -> tuple[int, int]:
    response = post_form(
        client,
        "/console/ads/new",
        "/console/ads/new",
        {
            "objective": "performance",
            "name": "Summer (SG) launch",
            "promotion_type": "app_download",
            "package_name": "com.example.game",
        },
    )
    assert response.status_code == 303, response.text[-1500:]
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == "Summer (SG) launch"))
    assert response.headers["location"].startswith(f"/console/ads/campaigns/{campaign_id}/ad-groups/new")
    form_url = f"/console/ads/campaigns/{campaign_id}/ad-groups/new"
    response = post_form(
        client,
        form_url,
        form_url,
        {
            "name": "SG interstitial",
            "promotion_channel": "getapps",
            "target_group": "all_users",
            "placement_type": "interstitial",
            "countries": "SG",
            "time_zone": "Asia/Singapore",
            "pacing": "even",
            "schedule_mode": "all_day",
            "daily_budget": "100",
            "total_budget": "1,000.50",
            "bid_type": "cpc",
            "bid": "0.35",
        },
    )
    assert response.status_code == 303, response.text[-3000:]
    group = session.scalars(select(AdGroup).where(AdGroup.name == "SG interstitial")).one()
    assert (group.bid_micros, group.total_budget_micros, group.daily_budget_micros) == (
        350_000,
        1_000_500_000,
        100_000_000,
    )
    assert group.targeting["countries"] == ["SG"]
    return campaign_id, group.id


def _upload(client: TestClient, ad_group_id: int, field: str, name: str, content: bytes, kept: list[int]):
    page = client.get(f"/console/ads/ad-groups/{ad_group_id}/creatives/new")
    return client.post(
        f"/console/ads/ad-groups/{ad_group_id}/media",
        data={"field": field, "format": "interstitial_image", field: [str(i) for i in kept]},
        files={f"upload_{field}": (name, content, "image/png")},
        headers={"X-CSRF-Token": csrf_from(page.text)},
    )


def test_campaign_ad_group_and_creative_step_by_step(client: TestClient, session: Session):
    _approved_advertiser(client, session, 21)
    _campaign_id, ad_group_id = _create_campaign_and_ad_group(client, session)

    estimate_page = client.get(f"/console/ads/ad-groups/{ad_group_id}/edit")
    assert 'id="estimate"' in estimate_page.text
    estimate = client.post(
        "/console/ads/estimate",
        data={"placement_type": "interstitial", "countries": ["SG"]},
        headers={"X-CSRF-Token": csrf_from(estimate_page.text)},
    )
    assert estimate.status_code == 200 and "data-estimate-users" in estimate.text

    image = _upload(client, ad_group_id, "images", "hero.png", png_bytes(1200, 628), [])
    assert image.status_code == 200 and "data-upload-error" not in image.text, image.text
    image_id = int(re.search(r'name="images" value="(\d+)"', image.text).group(1))  # type: ignore[union-attr]
    too_heavy = _upload(client, ad_group_id, "images", "heavy.png", png_bytes(1200, 628, noise=True), [image_id])
    assert 'data-upload-error="heavy.png"' in too_heavy.text and "500 KB" in too_heavy.text
    assert too_heavy.text.count('name="images"') == 1  # the refused file is not kept
    wrong_size = _upload(client, ad_group_id, "images", "small.png", png_bytes(600, 500), [image_id])
    assert 'data-upload-error="small.png"' in wrong_size.text and "600x500" in wrong_size.text
    icon = _upload(client, ad_group_id, "icon", "icon.png", png_bytes(84, 84), [])
    icon_id = int(re.search(r'name="icon" value="(\d+)"', icon.text).group(1))  # type: ignore[union-attr]

    form_url = f"/console/ads/ad-groups/{ad_group_id}/creatives/new"
    fields = {
        "name": "Hero A",
        "format": "interstitial_image",
        "titles": "Play the summer cup",
        "descriptions": "Free to play, 50 levels",
        "button_texts": "Install",
        "images": str(image_id),
        "icon": str(icon_id),
        "click_url": "https://example.com/game",
    }
    too_long = post_form(client, form_url, form_url, {**fields, "titles": "x" * 31})
    assert too_long.status_code == 422 and 'data-error-for="materials.titles"' in too_long.text
    preview = client.post(
        f"/console/ads/ad-groups/{ad_group_id}/preview", data=fields, headers={"X-CSRF-Token": csrf_from(too_long.text)}
    )
    assert preview.status_code == 200 and "srcdoc=" in preview.text and "Play the summer cup" in preview.text
    created = post_form(client, form_url, form_url, fields)
    assert created.status_code == 303, created.text[-2000:]
    creative = session.scalars(select(Creative).where(Creative.name == "Hero A")).one()
    assert creative.materials["images"] == [image_id] and creative.materials["icon"] == icon_id

    submitted = post_form(
        client, f"/console/ads/ad-groups/{ad_group_id}", f"/console/ads/ad-groups/{ad_group_id}/submit"
    )
    assert submitted.status_code == 303
    session.expire_all()
    assert session.get(AdGroup, ad_group_id).review_status == ReviewStatus.UNDER_REVIEW  # type: ignore[union-attr]
    assert session.get(Creative, creative.id).review_status == ReviewStatus.UNDER_REVIEW  # type: ignore[union-attr]

    admin = TestClient(client.app)
    sign_in(admin, "boss21@example.org", "admin-password")
    for kind, object_id in (("ad_group", ad_group_id), ("creative", creative.id)):
        assert f'data-review-row="{kind}-{object_id}"' in admin.get("/console/admin/review").text
        assert (
            post_form(
                admin, "/console/admin/review", f"/console/admin/review/{kind}/{object_id}", {"decision": "approve"}
            ).status_code
            == 303
        )
    session.expire_all()
    assert session.get(AdGroup, ad_group_id).review_status == ReviewStatus.APPROVED  # type: ignore[union-attr]
    token = admin.post("/api/v1/auth/login", json={"email": "boss21@example.org", "password": "admin-password"})
    staff = {"Authorization": f"Bearer {token.json()['access_token']}"}
    shown_on = admin.post(
        "/api/v1/publishers",
        headers=staff,
        json={"name": "Mi Browser", "app_package": "com.mi.browser", "platform": "android", "country": "SG"},
    )
    assert (
        admin.post(
            "/api/v1/ad-spaces",
            headers=staff,
            json={
                "publisher_id": shown_on.json()["id"],
                "name": "Splash",
                "placement_type": "interstitial",
                "accepted_formats": ["interstitial_image"],
                "sizes": ["1200x628"],
            },
        ).status_code
        == 201
    )
    page = client.get(f"/console/ads/ad-groups/{ad_group_id}")
    assert 'data-serving="balance_insufficient"' in page.text  # approved, with somewhere to show, but no money

    clients = set(
        session.scalars(
            select(ChangeEvent.client).where(ChangeEvent.object_type.in_(("campaign", "ad_group", "creative")))
        )
    )
    assert clients == {"console"}


def test_ad_list_batch_quick_edit_copy_and_cascading_delete(client: TestClient, session: Session):
    _approved_advertiser(client, session, 22)
    campaign_id, ad_group_id = _create_campaign_and_ad_group(client, session)

    listing = client.get("/console/ads/ad-groups?q=SG")
    assert f'id="row-ad-groups-{ad_group_id}"' in listing.text and 'data-serving="to_be_submitted"' in listing.text
    assert "data-serving-reason hidden" in listing.text  # the reason opens from the ⚠ button

    edit_row = client.get(f"/console/ads/ad-groups/{ad_group_id}/quick-edit")
    saved = client.post(
        f"/console/ads/ad-groups/{ad_group_id}/quick-edit",
        data={"name": "SG interstitial v2", "bid": "0.40", "daily_budget": "120", "total_budget": ""},
        headers={"X-CSRF-Token": csrf_from(edit_row.text), "HX-Request": "true"},
    )
    assert saved.status_code == 200 and "SG interstitial v2" in saved.text
    session.expire_all()
    group = session.get(AdGroup, ad_group_id)
    assert group is not None and (group.bid_micros, group.daily_budget_micros, group.total_budget_micros) == (
        400_000,
        120_000_000,
        None,
    )
    assert group.review_status == ReviewStatus.TO_BE_SUBMITTED

    copied = post_form(client, "/console/ads/ad-groups", f"/console/ads/ad-groups/{ad_group_id}/copy")
    copy_id = int(copied.headers["location"].split("/")[-1].split("?")[0])
    assert session.get(AdGroup, copy_id).name == "SG interstitial v2 - copy"  # type: ignore[union-attr]

    paused = post_form(
        client,
        "/console/ads/ad-groups",
        "/console/ads/ad-groups/batch",
        {"action": "pause", "ids": [str(ad_group_id), str(copy_id), "999999"], "back": "/console/ads/ad-groups"},
    )
    assert paused.status_code == 303 and "failed=999999" in paused.headers["location"]
    session.expire_all()
    assert {g.status for g in session.scalars(select(AdGroup))} == {"paused"}

    warned = client.get("/console/ads/campaigns")
    assert "2 ad group(s) and their creatives are deleted too" in warned.text
    deleted = post_form(
        client, "/console/ads/campaigns", f"/console/ads/campaigns/{campaign_id}/status", {"action": "delete"}
    )
    assert deleted.status_code == 303
    session.expire_all()
    assert {g.status for g in session.scalars(select(AdGroup))} == {"deleted"}
    assert f'id="row-campaigns-{campaign_id}"' not in client.get("/console/ads/campaigns").text


def test_large_lists_are_paged_on_the_server(client: TestClient, session: Session):
    account_id = _approved_advertiser(client, session, 23)
    campaign = Campaign(
        account_id=account_id,
        objective="performance",
        name="Bulk",
        promotion_type="app_download",
        package_name="com.example.bulk",
    )
    session.add(campaign)
    session.flush()
    from datetime import UTC, datetime

    session.add_all(
        AdGroup(
            account_id=account_id,
            campaign_id=campaign.id,
            name=f"Group {i:05d}",
            placement_type="banner",
            bid_type="cpc",
            bid_micros=100_000,
            start_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
        for i in range(300)
    )
    session.commit()
    page = client.get("/console/ads/ad-groups?size=20&page=3&sort=name&dir=asc")
    rows = re.findall(r'id="row-ad-groups-\d+"', page.text)
    assert len(rows) == 20
    assert "Group 00040" in page.text and "Group 00039" not in page.text and "Group 00060" not in page.text
    assert "300 items" in page.text
