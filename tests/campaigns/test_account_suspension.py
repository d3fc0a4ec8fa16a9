"""An account the platform suspended reads 'suspended by the platform' with the reviewer's reason, apart from an
account still in review, in the API and in the console in English and Chinese."""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from adstack.campaigns.enums import ServingStatus, UserStatus
from adstack.campaigns.status import ScheduleFacts, ServingFacts, campaign_serving_status, derive_serving_status
from adstack.review.models import ReviewStatus
from tests.campaigns.helpers import ad_group, campaign
from tests.console.support import sign_in
from tests.support import Api, expect

NOW = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)
SERVING = ServingFacts(
    status=UserStatus.ENABLED,
    campaign_status=UserStatus.ENABLED,
    account_review_status=ReviewStatus.APPROVED,
    review_status=ReviewStatus.APPROVED,
    available_micros=1_000_000,
    total_spend_micros=0,
    spend_today_micros=0,
    schedule=ScheduleFacts(time_zone="UTC", start_at=NOW - timedelta(days=1)),
    now=NOW,
    creatives=1,
    approved_creatives=1,
    inventory_spaces=1,
)
REASON = "Counterfeit goods in the landing pages"


def test_a_suspended_account_is_not_an_account_in_review() -> None:
    suspended = replace(SERVING, account_review_status=ReviewStatus.SUSPENDED, account_rejection_reasons=REASON)
    assert derive_serving_status(suspended) == (
        ServingStatus.ACCOUNT_SUSPENDED,
        f"the account was suspended by the platform: {REASON}",
    )
    in_review = replace(SERVING, account_review_status=ReviewStatus.UNDER_REVIEW)
    assert derive_serving_status(in_review)[0] == ServingStatus.ACCOUNT_UNDER_REVIEW
    status, reason = campaign_serving_status(
        UserStatus.ENABLED, ReviewStatus.SUSPENDED, [ServingStatus.ELIGIBLE], REASON
    )
    assert status == ServingStatus.ACCOUNT_SUSPENDED and reason.endswith(REASON)


def test_the_api_and_the_console_show_the_suspension_and_its_reason(api: Api) -> None:
    admin = api.admin()
    owner = api.approved_account(admin)
    made = campaign(api, owner)
    group = ad_group(api, owner, made["id"])
    expect(
        api.client.post(
            f"/api/v1/review/account/{owner.account_id}/suspend", headers=admin.headers, json={"reason": REASON}
        ),
        200,
    )

    seen = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=owner.headers), 200)
    assert (seen["serving_status"], seen["serving_reason"]) == (
        "account_suspended",
        f"the account was suspended by the platform: {REASON}",
    )
    assert (
        expect(api.client.get(f"/api/v1/campaigns/{made['id']}", headers=owner.headers), 200)["serving_status"]
        == "account_suspended"
    )

    client = api.client
    assert sign_in(client, owner.email, "correct horse battery").status_code == 303
    words = {
        "en": (
            "Account suspended by the platform",
            "the account was suspended by the platform: ",
            "The account was suspended by the platform: ",
        ),
        "zh": ("账户已被平台封禁", "该账户已被平台封禁：", "该账户已被平台封禁："),
    }
    try:
        for language, (badge, tip, notice) in words.items():
            client.cookies.set("adstack_lang", language, path="/console")
            for level in ("campaigns", "ad-groups"):
                response = client.get(f"/console/ads/{level}")
                assert response.status_code == 200, (language, level)
                page = html.unescape(response.text)
                assert 'data-serving="account_suspended"' in page, (language, level)
                assert badge in page and f"{tip}{REASON}" in page, (language, level)
                assert 'data-serving="account_under_review"' not in page
            account_page = html.unescape(client.get(f"/console/accounts/{owner.account_id}").text)
            assert f"{notice}{REASON}" in account_page, language
    finally:
        client.cookies.delete("adstack_lang", path="/console")
