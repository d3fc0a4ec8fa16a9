"""Least-privilege platform roles: reviewers review and read, account managers handle money and accounts;
editing an advertiser's campaigns needs the "operate on behalf" grant, and the operation log shows each such
write as on behalf of the account."""

from __future__ import annotations

import csv
import io

from adstack.accounts.models import Role
from tests.campaigns.helpers import ad_group, campaign
from tests.support import Actor, Api, expect

API = "/api/v1"


def _log(api: Api, actor: Actor, **params: object) -> list[dict[str, object]]:
    page = expect(api.client.get(f"{API}/operation-logs", headers=actor.headers, params=params), 200)
    return list(page["items"])


def test_reviewer_and_account_manager_edit_no_campaign_without_the_grant(api: Api) -> None:
    admin = api.admin()
    advertiser = api.approved_account(admin)
    group = ad_group(api, advertiser, campaign(api, advertiser)["id"])
    reviewer = api.admin(Role.REVIEWER)
    manager = api.admin(Role.ACCOUNT_MANAGER)
    for staff in (reviewer, manager):
        bid = api.client.patch(f"{API}/ad-groups/{group['id']}", headers=staff.headers, json={"bid_micros": 1})
        assert bid.status_code == 403, bid.text
        assert bid.json()["error"]["fields"][0]["rule"] == "permission:operate"
        created = api.client.post(
            f"{API}/campaigns",
            headers=staff.headers,
            json={
                "account_id": advertiser.account_id,
                "objective": "performance",
                "name": "Planted",
                "promotion_type": "app_download",
                "package_name": "com.example.planted",
            },
        )
        assert created.status_code == 403
        # Both still read.
        expect(api.client.get(f"{API}/ad-groups/{group['id']}", headers=staff.headers), 200)
    assert (
        expect(api.client.get(f"{API}/ad-groups/{group['id']}", headers=advertiser.headers), 200)["bid_micros"]
        == 200_000
    )
    # Their own jobs remain: the reviewer decides, the account manager tops up.
    expect(api.client.post(f"{API}/ad-groups/{group['id']}/submit", headers=advertiser.headers), 200)
    expect(
        api.client.post(
            f"{API}/ad-groups/{group['id']}/review", headers=reviewer.headers, json={"decision": "approve"}
        ),
        200,
    )
    expect(
        api.client.post(
            f"{API}/finance/top-ups",
            headers=manager.headers,
            json={"account_id": advertiser.account_id, "amount_micros": 10_000_000},
        ),
        201,
    )
    # An account manager does not review, a reviewer moves no money.
    assert (
        api.client.post(
            f"{API}/ad-groups/{group['id']}/review",
            headers=manager.headers,
            json={"decision": "reject", "reasons": ["x"]},
        ).status_code
        == 403
    )
    assert (
        api.client.post(
            f"{API}/finance/top-ups",
            headers=reviewer.headers,
            json={"account_id": advertiser.account_id, "amount_micros": 10_000_000},
        ).status_code
        == 403
    )


def test_the_on_behalf_grant_lets_staff_edit_and_the_log_says_on_behalf(api: Api) -> None:
    admin = api.admin()
    advertiser = api.approved_account(admin)
    group = ad_group(api, advertiser, campaign(api, advertiser)["id"])
    reviewer = api.admin(Role.REVIEWER)
    # Only an admin grants it, and only to reviewers and account managers.
    assert (
        api.client.put(
            f"{API}/users/{reviewer.user_id}/on-behalf", headers=reviewer.headers, json={"granted": True}
        ).status_code
        == 403
    )
    assert (
        api.client.put(
            f"{API}/users/{advertiser.user_id}/on-behalf", headers=admin.headers, json={"granted": True}
        ).status_code
        == 422
    )
    granted = expect(
        api.client.put(f"{API}/users/{reviewer.user_id}/on-behalf", headers=admin.headers, json={"granted": True}), 200
    )
    assert granted["operates_on_behalf"] is True

    expect(
        api.client.patch(f"{API}/ad-groups/{group['id']}", headers=reviewer.headers, json={"bid_micros": 250_000}), 200
    )
    created = expect(
        api.client.post(
            f"{API}/campaigns",
            headers=reviewer.headers,
            json={
                "account_id": advertiser.account_id,
                "objective": "performance",
                "name": "Made for the client",
                "promotion_type": "app_download",
                "package_name": "com.example.client",
            },
        ),
        201,
    )

    # The advertiser's own log shows who, for which account, on behalf.
    on_behalf = _log(api, advertiser, on_behalf="true")
    assert {(e["object_type"], e["object_id"]) for e in on_behalf} == {
        ("ad_group", group["id"]),
        ("campaign", created["id"]),
    }
    for event in on_behalf:
        assert event["operator_email"] == reviewer.email and event["operator_role"] == "reviewer"
        assert event["account_id"] == advertiser.account_id and event["on_behalf"] is True
    bid = next(e for e in on_behalf if e["object_type"] == "ad_group")
    assert {"field": "bid_micros", "old": 200_000, "new": 250_000} in bid["changes"]
    # The advertiser's own edits and the review decisions are not on behalf.
    own = _log(api, advertiser, on_behalf="false")
    assert own and all(e["operator_email"] != reviewer.email for e in own)
    exported = list(
        csv.DictReader(io.StringIO(api.client.get(f"{API}/operation-logs/export.csv", headers=advertiser.headers).text))
    )
    assert {row["on_behalf"] for row in exported if row["operator"] == reviewer.email} == {"yes"}

    # An admin's edits are on behalf too; withdrawing the grant stops the reviewer.
    expect(api.client.patch(f"{API}/ad-groups/{group['id']}", headers=admin.headers, json={"bid_micros": 260_000}), 200)
    assert any(e["operator_email"] == admin.email for e in _log(api, advertiser, on_behalf="true"))
    expect(
        api.client.put(f"{API}/users/{reviewer.user_id}/on-behalf", headers=admin.headers, json={"granted": False}), 200
    )
    assert (
        api.client.patch(f"{API}/ad-groups/{group['id']}", headers=reviewer.headers, json={"bid_micros": 1}).status_code
        == 403
    )
