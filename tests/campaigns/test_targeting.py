"""Targeting as the Mi Ads guide writes it (3.1.2 Create Ad Group): time zones in its "UTC+8" form and by their
standard offset, ISO 3166 countries, and the "exceptions" an ad group never serves on."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth, users
from adstack.accounts import service as accounts
from adstack.accounts.models import Account
from adstack.campaigns.models import AdGroup, Campaign
from adstack.finance.models import EntryType
from tests.campaigns.helpers import ad_group, ad_space, approved_ad_group, campaign, creative, ledger, publisher
from tests.console.support import post_form, register
from tests.serving.test_api import eventually
from tests.support import Actor, Api, expect

GAID = "38400000-8cf0-11bd-b23e-10b96e4e1001"


def _fields(error: dict[str, Any]) -> list[str]:
    return [f["field"] for f in error["error"]["fields"]]


def test_time_zones_in_the_guides_utc_form_and_by_standard_offset(api: Api) -> None:
    actor = api.approved_account()
    camp = campaign(api, actor)
    for given, stored in (
        ("UTC+8", "Etc/GMT-8"),
        ("UTC+08:00", "Etc/GMT-8"),
        ("UTC−12:00", "Etc/GMT+12"),
        ("UTC-1", "Etc/GMT+1"),
        ("UTC+0", "UTC"),
        ("UTC+12:00", "Etc/GMT-12"),
        # +12 standard, +13 in its summer (January): within the guide's UTC+12.
        ("Pacific/Auckland", "Pacific/Auckland"),
        ("Asia/Kolkata", "Asia/Kolkata"),
    ):
        group = ad_group(api, actor, camp["id"], name=f"zone {given}", time_zone=given)
        assert group["time_zone"] == stored, given
    for refused in ("UTC+13", "UTC+5:30", "Pacific/Kiritimati", "Pacific/Chatham", "Mars/Olympus"):
        answer = api.client.post(
            "/api/v1/ad-groups",
            headers=actor.headers,
            json={
                "campaign_id": camp["id"],
                "name": f"zone {refused}",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 200_000,
                "time_zone": refused,
            },
        )
        assert _fields(expect(answer, 422)) == ["time_zone"], refused

    # The account's zone takes the same forms.
    india = api.register(time_zone="UTC+8")
    account = expect(api.client.get(f"/api/v1/accounts/{india.account_id}", headers=india.headers), 200)
    assert account["time_zone"] == "Etc/GMT-8"


def test_countries_are_iso_3166_alpha_2(api: Api) -> None:
    actor = api.approved_account()
    camp = campaign(api, actor)
    group = ad_group(api, actor, camp["id"], targeting={"countries": ["ID", "SG", "HK", "TW"]})
    assert group["targeting"]["countries"] == ["ID", "SG", "HK", "TW"]
    for code in ("XX", "EU", "ZZ", "UK"):
        answer = api.client.post(
            "/api/v1/ad-groups",
            headers=actor.headers,
            json={
                "campaign_id": camp["id"],
                "name": f"country {code}",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 200_000,
                "targeting": {"countries": ["ID", code]},
            },
        )
        assert _fields(expect(answer, 422)) == ["targeting.countries.1"], code


def _approved_creative(api: Api, actor: Actor, admin: Actor, ad_group_id: int) -> None:
    made = creative(api, actor, ad_group_id)
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=actor.headers), 200)
    expect(
        api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )


def _ad_groups_served(api: Api, space_id: int) -> set[int] | None:
    answer = api.client.post(
        "/v1/ads", json={"ad_space_id": space_id, "count": 3, "device": {"gaid": GAID, "country": "ID"}}
    )
    if answer.status_code == 404:
        return None
    return {ad["ad_group_id"] for ad in expect(answer, 200)["ads"]}


def test_exceptions_keep_an_ad_group_off_the_publishers_and_ad_spaces_it_names(api: Api) -> None:
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    browser = publisher(api, admin)  # com.mi.browser
    news = publisher(api, admin, name="Mi News", app_package="com.mi.news")
    browser_home = ad_space(api, admin, browser["id"], name="Browser home")
    browser_feed = ad_space(api, admin, browser["id"], name="Browser feed")
    news_home = ad_space(api, admin, news["id"], name="News home")
    camp = campaign(api, actor)
    everywhere = approved_ad_group(api, actor, admin, camp["id"], name="Everywhere")
    excepting = approved_ad_group(
        api,
        actor,
        admin,
        camp["id"],
        name="Not on the feed or the news",
        targeting={
            "countries": ["ID"],
            "exceptions": {"ad_space_ids": [browser_feed["id"]], "publisher_packages": ["com.mi.news"]},
        },
    )
    assert excepting["targeting"]["exceptions"] == {
        "ad_space_ids": [browser_feed["id"]],
        "publisher_packages": ["com.mi.news"],
    }
    for group in (everywhere, excepting):
        _approved_creative(api, actor, admin, group["id"])

    both = {everywhere["id"], excepting["id"]}
    assert eventually(lambda: _ad_groups_served(api, browser_home["id"]) == both)
    assert eventually(lambda: _ad_groups_served(api, news_home["id"]) is not None)
    assert _ad_groups_served(api, browser_feed["id"]) == {everywhere["id"]}
    assert _ad_groups_served(api, news_home["id"]) == {everywhere["id"]}

    # Lifting the exceptions lets it serve there again.
    lifted = expect(
        api.client.patch(
            f"/api/v1/ad-groups/{excepting['id']}", headers=actor.headers, json={"targeting": {"countries": ["ID"]}}
        ),
        200,
    )
    if lifted["review_status"] == "under_review":  # where targeting edits are reviewed again
        expect(
            api.client.post(
                f"/api/v1/ad-groups/{excepting['id']}/review", headers=admin.headers, json={"decision": "approve"}
            ),
            200,
        )
    assert eventually(lambda: _ad_groups_served(api, news_home["id"]) == both)


def test_exceptions_are_checked(api: Api) -> None:
    actor = api.approved_account()
    camp = campaign(api, actor)
    base = {
        "campaign_id": camp["id"],
        "name": "Checked",
        "placement_type": "banner",
        "bid_type": "cpc",
        "bid_micros": 200_000,
    }
    for exceptions, field in (
        ({"publisher_packages": ["not a package"]}, "targeting.exceptions.publisher_packages.0"),
        ({"ad_space_ids": [0]}, "targeting.exceptions.ad_space_ids.0"),
        ({"publishers": ["com.mi.news"]}, "targeting.exceptions.publishers"),
    ):
        answer = api.client.post(
            "/api/v1/ad-groups", headers=actor.headers, json={**base, "targeting": {"exceptions": exceptions}}
        )
        assert _fields(expect(answer, 422)) == [field]


def test_the_console_ad_group_form_takes_the_guides_time_zones_and_exceptions(
    client: TestClient, session: Session
) -> None:
    register(client, 7301)
    account_id = session.scalar(select(Account.id).where(Account.contact_email == "ops7301@example.com"))
    assert account_id is not None
    reviewer = auth.principal_for(
        users.create_admin(session, email="boss7301@example.org", password="admin-password")
    )
    accounts.review_account(session, reviewer, account_id, approve=True)
    session.commit()
    created = post_form(
        client,
        "/console/ads/new",
        "/console/ads/new",
        {
            "objective": "performance",
            "name": "Exceptions",
            "promotion_type": "app_download",
            "package_name": "com.example.game",
        },
    )
    assert created.status_code == 303, created.text[-1500:]
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == "Exceptions"))
    form_url = f"/console/ads/campaigns/{campaign_id}/ad-groups/new"
    form = client.get(form_url).text
    assert '<option value="Etc/GMT-8"' in form and ">UTC+8<" in form
    assert 'value="Pacific/Auckland"' in form
    fields = {
        "name": "Not on the news",
        "promotion_channel": "getapps",
        "target_group": "never_installed",
        "placement_type": "interstitial",
        "countries": "ID",
        "time_zone": "Etc/GMT-8",
        "pacing": "even",
        "schedule_mode": "all_day",
        "bid_type": "cpc",
        "bid": "0.35",
        "exception_publisher_packages": "com.mi.news, com.mi.video",
        "exception_ad_space_ids": "12, x",
    }
    refused = post_form(client, form_url, form_url, fields)
    assert refused.status_code == 422 and 'data-error-for="targeting.exceptions.ad_space_ids"' in refused.text
    saved = post_form(client, form_url, form_url, {**fields, "exception_ad_space_ids": "12"})
    assert saved.status_code == 303, saved.text[-2000:]
    group = session.scalars(select(AdGroup).where(AdGroup.name == "Not on the news")).one()
    assert group.time_zone == "Etc/GMT-8"
    assert group.targeting["exceptions"] == {
        "publisher_packages": ["com.mi.news", "com.mi.video"],
        "ad_space_ids": [12],
    }
    page = client.get(f"/console/ads/ad-groups/{group.id}/edit")
    assert 'value="com.mi.news, com.mi.video"' in page.text
