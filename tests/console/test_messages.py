"""Refusals in words: every error of a form at once, beside its input, in the visitor's language, with money in
the account's currency and never a path, a pattern or micros."""

from __future__ import annotations

import csv
import io
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth, users
from adstack.accounts import service as accounts
from adstack.accounts.models import Account
from adstack.campaigns.models import AdGroup, Campaign
from adstack.console.messages import RULE_ALIASES, RULE_SENTENCES, Speaker, serving_reason
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow, zone
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from tests.campaigns.helpers import ad_group, campaign
from tests.console.support import post_form, register, sign_in
from tests.support import Api

MACHINE_TALK = re.compile(
    r"/api/v\d|\^https?|\\d|_micros|micros\b|String should|Input should|Value error|"
    r"\(limit: |\bPOST /"
)


def _advertiser_with_campaign(client: TestClient, session: Session, n: int) -> int:
    register(client, n)
    account_id = session.scalar(select(Account.id).where(Account.contact_email == f"ops{n}@example.com"))
    reviewer = auth.principal_for(
        users.create_admin(session, email=f"staff{n}@example.org", password="admin-password")
    )
    accounts.review_account(session, reviewer, account_id, approve=True)
    session.commit()
    response = post_form(
        client,
        "/console/ads/new",
        "/console/ads/new",
        {
            "objective": "performance",
            "name": "Launch",
            "promotion_type": "app_download",
            "package_name": "com.example.game",
        },
    )
    assert response.status_code == 303, response.text[-1500:]
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == "Launch"))
    assert campaign_id is not None
    return campaign_id


def _error_beside(html: str, input_id: str) -> str:
    """The message in the same field box as the input (the `.field` div that holds it)."""
    match = re.search(rf'<label for="{input_id}">.*?(?=<label |<div class="field|<h2>|</form>)', html, re.S)
    assert match, f"no field box for {input_id}"
    errors = re.findall(r'<div class="error-text"[^>]*>(.*?)</div>', match.group(0), re.S)
    assert errors, f"no message beside {input_id}"
    return " ".join(errors)


BAD_AD_GROUP = {
    "name": "",
    "promotion_channel": "getapps",
    "target_group": "all_users",
    "placement_type": "interstitial",
    "countries": "SG",
    "time_zone": "Asia/Singapore",
    "pacing": "even",
    "schedule_mode": "all_day",
    "start_at": "2031-05-02T10:00",
    "end_at": "2031-05-01T10:00",
    "bid_type": "cpc",
    "bid": "abc",
    "frequency_cap_per_day": "-1",
    "daily_budget": "12.5",
}


@pytest.mark.parametrize(
    "language, expected",
    [
        (
            "en",
            {
                "name": "Name is required",
                "bid": "Bid must be a number",
                "end_at": "The end must be later",
                "frequency_cap_per_day": "whole number from 1 to 1,000",
            },
        ),
        (
            "zh",
            {
                "name": "名称为必填项",
                "bid": "出价必须是数字",
                "end_at": "结束时间必须晚于开始时间",
                "frequency_cap_per_day": "1 到 1,000",
            },
        ),
    ],
)
def test_ad_group_form_shows_every_error_beside_its_input(
    client: TestClient, session: Session, language: str, expected: dict[str, str]
):
    client.cookies.set("adstack_lang", language, path="/console")
    campaign_id = _advertiser_with_campaign(client, session, 700 + len(language))
    url = f"/console/ads/campaigns/{campaign_id}/ad-groups/new"
    response = post_form(client, url, url, BAD_AD_GROUP)
    assert response.status_code == 422
    html = response.text
    for input_id, words in expected.items():
        assert words in _error_beside(html, input_id), (input_id, _error_beside(html, input_id))
    # What was typed stays in the form.
    for name in ("bid", "frequency_cap_per_day", "end_at", "daily_budget"):
        assert f'name="{name}"' in html and f'value="{BAD_AD_GROUP[name]}"' in html
    assert not MACHINE_TALK.search(html), MACHINE_TALK.search(html)
    assert session.scalar(select(AdGroup.id)) is None


def test_money_limits_are_in_the_account_currency_and_rules_are_sentences():
    english, chinese = Speaker("en", "USD"), Speaker("zh", "USD")
    item = {"field": "daily_budget_micros", "rule": "le_total_budget", "limit": 20_000_000, "actual": 50_000_000}
    assert english.sentence(item) == "The daily budget cannot be more than the total budget."
    too_low = {"field": "bid_micros", "rule": "greater_than_equal", "limit": 20_000_000}
    assert english.sentence(too_low) == "Bid must be at least $20.00."
    assert "US$20.00" in chinese.sentence(too_low) and "出价" in chinese.sentence(too_low)
    pattern = {
        "field": "click_url",
        "rule": "string_pattern_mismatch",
        "limit": "^https?://\\S+$",
        "message": "String should match pattern '^https?://\\S+$'",
    }
    assert english.sentence(pattern) == "Click address must be a web address starting with http:// or https://."
    nested = {"field": "targeting.os_version_max", "rule": "value_error", "message": "Value error, not a version"}
    assert "OS version to" in english.sentence(nested) and "Value error" not in english.sentence(nested)
    heavy = {"field": "images", "rule": "max_size_kb", "limit": 500, "actual": 2212}
    assert english.sentence(heavy) == "The file is too large: 2.2 MB; at most 500 KB."
    for rule in RULE_ALIASES:
        for speaker in (english, chinese):
            text = speaker.sentence(
                {
                    "field": "bid_micros",
                    "rule": rule,
                    "limit": [1_000_000, 2_000_000],
                    "actual": 3_000_000,
                    "message": "POST /api/v1/reports/jobs",
                }
            )
            assert text and not MACHINE_TALK.search(text), (rule, text)
    assert set(RULE_ALIASES.values()) <= set(RULE_SENTENCES)


def test_error_page_never_shows_a_path(client: TestClient, session: Session):
    register(client, 790)
    response = client.get("/console/ads/campaigns/99999999/ad-groups/new")
    assert response.status_code == 404 and not MACHINE_TALK.search(response.text)


def test_serving_reasons_are_told_in_chinese():
    assert serving_reason("the ad group is paused", "zh") == "广告组已暂停"
    assert serving_reason("the account is under review", "zh") == "账户审核中"
    rejected = serving_reason("the ad group was rejected: The landing page cannot be opened", "zh")
    assert rejected == "审核未通过：落地页无法打开"
    assert serving_reason("total budget of 10.00 USD is spent", "en") == "total budget of 10.00 USD is spent"


def test_operation_log_reads_in_words(api: Api, client: TestClient, session: Session):
    advertiser = api.approved_account()
    group = ad_group(api, advertiser, campaign(api, advertiser)["id"])
    response = api.client.patch(
        f"/api/v1/ad-groups/{group['id']}",
        headers=advertiser.headers,
        json={
            "bid_micros": 250_000,
            "targeting": {"countries": ["ID", "SG"], "genders": ["female"], "os_version_min": "10"},
        },
    )
    assert response.status_code == 200, response.text
    sign_in(client, advertiser.email, "correct horse battery")
    client.cookies.set("adstack_lang", "zh", path="/console")
    html = client.get("/console/logs?object_type=ad_group").text
    edit = re.search(r'data-operation="update".*?</tr>\s*</tbody></table>', html, re.S)
    assert edit, "no edit row in the log"
    row = edit.group(0)
    bid = re.search(
        r'<tr data-field="bid_micros"><td>(.*?)</td><td class="old">(.*?)</td><td class="new">(.*?)</td>', row
    )
    assert bid and bid.groups() == ("出价", "US$0.20", "US$0.25")
    targeting = re.search(
        r'<tr data-field="targeting"><td>(.*?)</td><td class="old">.*?</td>'
        r'<td class="new">(.*?)</td>',
        row,
        re.S,
    )
    assert targeting and targeting.group(1) == "定向"
    assert "国家或地区: ID, SG" in targeting.group(2) and "女" in targeting.group(2)
    assert "系统版本 10 至" in targeting.group(2)
    assert "编辑" in row and "{" not in targeting.group(2) and "bid_micros<" not in html.replace('"bid_micros"', "")


def test_report_download_has_a_bom_money_in_units_and_headings_in_the_language(
    api: Api, client: TestClient, session: Session, settings: Settings
):
    advertiser = api.approved_account(company_name="夏日游戏有限公司")
    camp = campaign(api, advertiser, name="春节活动")
    today = utcnow()
    store = get_event_store(settings)
    common = {
        "occurred_at": today,
        "account_id": advertiser.account_id,
        "campaign_id": camp["id"],
        "country": "ID",
        "objective": "performance",
    }
    store.append(
        [
            Event(event_id="imp-csv", event_type=EventType.IMPRESSION, **common),
            Event(event_id="chg-csv", event_type=EventType.CHARGE, cost_micros=2_345_000, **common),
        ]
    )
    store.flush()
    sign_in(client, advertiser.email, "correct horse battery")
    client.cookies.set("adstack_lang", "zh", path="/console")
    day = today.astimezone(zone("Asia/Singapore")).date().isoformat()
    query = (
        f"start_date={day}&end_date={day}&granularity=total&dimensions=campaign&metrics=impressions&metrics=cost_micros"
    )
    download = client.get(f"/console/reports/download?format=csv&{query}")
    assert download.status_code == 200 and download.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    header, first = rows[0], rows[1]
    assert "广告计划名称" in header and "消耗 (USD)" in header and not any("micros" in h for h in header)
    assert first[header.index("广告计划名称")] == "春节活动"
    assert first[header.index("消耗 (USD)")] == "2.345000"  # exact to the micro, as the ledger
    assert rows[-1][0] == "合计"
    page = client.get(f"/console/reports?{query}")
    assert "广告计划名称" in page.text and "Campaign name" not in page.text


def _cells(row_html: str) -> int:
    return sum(int(span or 1) for span in re.findall(r'<td(?:[^>]*?colspan="(\d+)")?[^>]*>', row_html))


def test_quick_edit_row_keeps_the_header_columns_and_shows_its_refusal(api: Api, client: TestClient, session: Session):
    advertiser = api.approved_account()
    group = ad_group(api, advertiser, campaign(api, advertiser)["id"])
    sign_in(client, advertiser.email, "correct horse battery")
    listing = client.get("/console/ads/ad-groups").text
    header = re.search(r'<table id="ad-list".*?<thead>(.*?)</thead>', listing, re.S)
    assert header
    columns = len(re.findall(r"<th[\s>]", header.group(1)))
    shown = re.search(rf'<tr id="row-ad-groups-{group["id"]}".*?</tr>', listing, re.S)
    assert shown and _cells(shown.group(0)) == columns
    editing = client.get(f"/console/ads/ad-groups/{group['id']}/quick-edit")
    assert _cells(editing.text) == columns
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', listing).group(1)  # type: ignore[union-attr]
    refused = client.post(
        f"/console/ads/ad-groups/{group['id']}/quick-edit",
        data={"name": "Renamed", "bid": "abc", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 422 and _cells(refused.text) == columns
    assert "Bid must be a number" in refused.text and not MACHINE_TALK.search(refused.text)


def test_rejection_reasons_and_review_actions_read_in_chinese(api: Api, client: TestClient, session: Session):
    admin = api.admin()
    advertiser = api.approved_account(admin)
    group = ad_group(api, advertiser, campaign(api, advertiser)["id"])
    api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=advertiser.headers)
    response = api.client.post(
        f"/api/v1/ad-groups/{group['id']}/review",
        headers=admin.headers,
        json={"decision": "reject", "reasons": ["The landing page cannot be opened", "Our own words"]},
    )
    assert response.status_code == 200, response.text
    sign_in(client, advertiser.email, "correct horse battery")
    client.cookies.set("adstack_lang", "zh", path="/console")
    html = client.get(f"/console/ads/ad-groups/{group['id']}").text
    assert "落地页无法打开; Our own words" in html and "The landing page cannot be opened" not in html
    assert ">reject<" not in html and ">submit<" not in html and "提交审核" in html
    overview = client.get("/console/").text
    assert overview.count("落地页无法打开") >= 1 and "The landing page cannot be opened" not in overview
    listing = client.get("/console/ads/ad-groups").text
    tip = re.search(r'data-serving="rejected"[\s\S]*?data-serving-reason hidden>([^<]+)<', listing)
    assert tip and "落地页无法打开" in tip.group(1) and "rejected" not in tip.group(1)
