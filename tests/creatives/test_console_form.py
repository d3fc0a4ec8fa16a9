"""The console's creative form offers the guide's message-card and push fields, in English and Chinese, and saves
them through the same rules as the API."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth, users
from adstack.accounts import service as accounts
from adstack.accounts.models import Account
from adstack.campaigns.models import AdGroup, Campaign
from adstack.console.web import LANGUAGE_COOKIE
from adstack.creatives.models import Creative
from tests.console.support import csrf_from, png_bytes, post_form, register


def _ad_group(client: TestClient, session: Session, placement: str) -> int:
    name = f"Launch {placement}"
    created = post_form(
        client,
        "/console/ads/new",
        "/console/ads/new",
        {
            "objective": "performance",
            "name": name,
            "promotion_type": "app_download",
            "package_name": "com.example.game",
        },
    )
    assert created.status_code == 303, created.text[-1500:]
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == name))
    form_url = f"/console/ads/campaigns/{campaign_id}/ad-groups/new"
    response = post_form(
        client,
        form_url,
        form_url,
        {
            "name": f"SG {placement}",
            "promotion_channel": "getapps",
            "target_group": "all_users",
            "placement_type": placement,
            "countries": "SG",
            "time_zone": "Asia/Singapore",
            "pacing": "even",
            "schedule_mode": "all_day",
            "daily_budget": "100",
            "total_budget": "1000",
            "bid_type": "cpc",
            "bid": "0.35",
        },
    )
    assert response.status_code == 303, response.text[-3000:]
    return session.scalars(select(AdGroup.id).where(AdGroup.name == f"SG {placement}")).one()


def _form_for(client: TestClient, ad_group_id: int, code: str) -> str:
    page = client.get(f"/console/ads/ad-groups/{ad_group_id}/creatives/new")
    response = client.post(
        f"/console/ads/ad-groups/{ad_group_id}/creatives/form",
        data={"format": code},
        headers={"X-CSRF-Token": csrf_from(page.text)},
    )
    assert response.status_code == 200, response.text[-1500:]
    return response.text


def _signed_in_advertiser(client: TestClient, session: Session) -> None:
    register(client, 71)
    account_id = session.scalar(select(Account.id).where(Account.contact_email == "ops71@example.com"))
    assert account_id is not None
    reviewer = auth.principal_for(
        users.create_admin(session, email="boss71@example.org", password="admin-password")
    )
    accounts.review_account(session, reviewer, account_id, approve=True)
    session.commit()


def test_the_sms_text_card_form_in_english_and_chinese(client: TestClient, session: Session) -> None:
    _signed_in_advertiser(client, session)
    sms = _ad_group(client, session, "sms")

    english = _form_for(client, sms, "sms_business")
    for label in (
        "Business phone number",
        "Business name",
        "Subtitles",
        "Button text 1",
        "Button text 2",
        "must contain a URL",
    ):
        assert label in english, label
    assert 'name="business_phone"' in english and english.count('name="subtitles"') == 3
    client.cookies.set(LANGUAGE_COOKIE, "zh")
    chinese = _form_for(client, sms, "sms_business")
    for label in ("商家电话", "商家名称", "副标题", "按钮文案 1", "按钮文案 2", "须包含 URL"):
        assert label in chinese, label
    client.cookies.set(LANGUAGE_COOKIE, "en")

    form_url = f"/console/ads/ad-groups/{sms}/creatives/new"
    fields = {
        "name": "Store card",
        "format": "sms_business",
        "business_phone": "+65 9123 4567",
        "business_name": "Mi Store",
        "subtitles": "Open daily",
        "descriptions": "Deals: https://mi.example.com",
        "button_1": "Shop now",
        "button_2": "Call us",
        "click_url": "https://example.com/store",
    }
    refused = post_form(client, form_url, form_url, {**fields, "business_phone": "9123 4567", "button_2": ""})
    assert refused.status_code == 422
    assert 'data-error-for="materials.business_phone"' in refused.text
    assert 'data-error-for="materials.button_2"' in refused.text
    created = post_form(client, form_url, form_url, fields)
    assert created.status_code == 303, created.text[-2000:]
    creative = session.scalars(select(Creative).where(Creative.name == "Store card")).one()
    assert creative.materials["business_phone"] == "+6591234567"
    assert (creative.materials["button_1"], creative.materials["button_2"]) == ("Shop now", "Call us")
    assert creative.materials["subtitles"] == ["Open daily"]
    detail = client.get(f"/console/ads/creatives/{creative.id}")
    assert "Business phone number" in detail.text and "+6591234567" in detail.text and "Open daily" in detail.text
    edit = client.get(f"/console/ads/creatives/{creative.id}/edit")
    assert 'value="+6591234567"' in edit.text and 'value="Call us"' in edit.text


def test_push_top_button_and_custom_background_colour(client: TestClient, session: Session) -> None:
    _signed_in_advertiser(client, session)
    push = _ad_group(client, session, "push")
    page = _form_for(client, push, "large_image")
    assert "Allow the top button" in page and 'name="top_button"' in page

    def upload(field: str, width: int, height: int) -> int:
        form = client.get(f"/console/ads/ad-groups/{push}/creatives/new")
        response = client.post(
            f"/console/ads/ad-groups/{push}/media",
            data={"field": field, "format": "large_image"},
            files={f"upload_{field}": (f"{field}.png", png_bytes(width, height), "image/png")},
            headers={"X-CSRF-Token": csrf_from(form.text)},
        )
        assert "data-upload-error" not in response.text, response.text
        found = re.search(rf'name="{field}" value="(\d+)"', response.text)
        assert found is not None
        return int(found.group(1))

    form_url = f"/console/ads/ad-groups/{push}/creatives/new"
    created = post_form(
        client,
        form_url,
        form_url,
        {
            "name": "Parcel",
            "format": "large_image",
            "images": str(upload("images", 800, 360)),
            "icon": str(upload("icon", 180, 180)),
            "titles": "Your parcel is here",
            "descriptions": "Tap to track it",
            "top_button": "1",
            "click_url": "https://example.com/track",
        },
    )
    assert created.status_code == 303, created.text[-2000:]
    creative = session.scalars(select(Creative).where(Creative.name == "Parcel")).one()
    assert creative.materials["top_button"] is True

    icon_group = _ad_group(client, session, "icon")
    background = _form_for(client, icon_group, "custom_background")
    assert "Background colour" in background and 'name="background_color"' in background
    client.cookies.set(LANGUAGE_COOKIE, "zh")
    assert "背景颜色" in _form_for(client, icon_group, "custom_background")
    assert "允许置顶按钮" in _form_for(client, push, "large_image")
