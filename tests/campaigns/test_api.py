from __future__ import annotations

from adstack.accounts.models import Role
from adstack.core.timeutil import utcnow
from adstack.finance.charges import apply_charge
from tests.campaigns.helpers import ad_group, ad_space, approved_ad_group, campaign, ledger, publisher
from tests.serving.test_api import approved_creative
from tests.support import Api, expect


def test_create_campaign_and_ad_group_then_read_back(api: Api) -> None:
    adv = api.approved_account()
    camp = campaign(api, adv)
    assert camp["account_id"] == adv.account_id and camp["status"] == "enabled"
    assert camp["serving_status"] == "no_active_ad_groups"
    group = ad_group(api, adv, camp["id"], time_zone="Asia/Jakarta", start_at="2025-03-01T08:00:00")
    assert group["review_status"] == "to_be_submitted"
    assert group["serving_status"] == "to_be_submitted"
    # A time without a zone is read in the ad group's zone (UTC+7).
    assert group["start_at"].startswith("2025-03-01T01:00:00")
    read = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)
    assert read["targeting"]["countries"] == ["ID"]
    assert read["bid_type"] == "cpc" and read["bid_micros"] == 200_000


def test_field_level_errors(api: Api) -> None:
    adv = api.approved_account()
    out = expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=adv.headers,
            json={"objective": "performance", "name": "x" * 101, "promotion_type": "app_download"},
        ),
        422,
    )
    assert {"field": "name", "rule": "string_too_long"} in [
        {"field": f["field"], "rule": f["rule"]} for f in out["error"]["fields"]
    ]
    out = expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=adv.headers,
            json={"objective": "performance", "name": "No package", "promotion_type": "app_download"},
        ),
        422,
    )
    assert out["error"]["fields"][0]["field"] == "package_name"
    assert out["error"]["fields"][0]["rule"] == "required"
    brand = campaign(api, adv, objective="brand")
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": brand["id"],
                "name": "Wrong bid",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1,
                "daily_budget_micros": 2_000_000,
                "total_budget_micros": 1_000_000,
                "start_at": "2025-01-02T00:00:00Z",
                "end_at": "2025-01-01T00:00:00Z",
            },
        ),
        422,
    )
    rules = {f["field"]: f for f in out["error"]["fields"]}
    assert rules["bid_type"]["rule"] == "objective_bid_type"
    assert rules["bid_type"]["limit"] == ["cpt", "guaranteed_cpm"]
    assert rules["daily_budget_micros"]["rule"] == "le_total_budget"
    assert rules["end_at"]["rule"] == "after_start"
    perf = campaign(api, adv)
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": perf["id"],
                "name": "CPA",
                "placement_type": "banner",
                "bid_type": "cpa",
                "bid_micros": 1_000_000,
            },
        ),
        422,
    )
    assert out["error"]["fields"][0]["field"] == "conversion_event"
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": perf["id"],
                "name": "Zone",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1,
                "time_zone": "Pacific/Kiritimati",
                "dayparting": [[False] * 24] * 7,
                "targeting": {"countries": ["id"], "os_version_min": "12", "os_version_max": "10"},
            },
        ),
        422,
    )
    fields = {f["field"] for f in out["error"]["fields"]}
    assert {"time_zone", "dayparting", "targeting.countries.0", "targeting.os_version_max"} <= fields
    expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": perf["id"],
                "name": "ok",
                "placement_type": "banner",
                "bid_type": "cpa",
                "bid_micros": 1_000_000,
                "conversion_event": "PURCHASE",
            },
        ),
        201,
    )


def test_publishers_and_ad_spaces_are_validated_against_placement(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    pub = publisher(api, admin)
    other = publisher(api, admin, name="Other", app_package="com.other.app")
    banner = ad_space(api, admin, pub["id"])
    video = ad_space(
        api,
        admin,
        pub["id"],
        name="Reward",
        placement_type="rewarded_video",
        accepted_formats=["rewarded_video"],
        sizes=[],
    )
    camp = campaign(api, adv)
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": camp["id"],
                "name": "Bad inventory",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1,
                "publisher_ids": [pub["id"], 999_999],
                "ad_space_ids": [banner["id"], video["id"]],
            },
        ),
        422,
    )
    rules = {(f["field"], f["rule"]) for f in out["error"]["fields"]}
    assert ("publisher_ids.1", "exists") in rules
    assert ("ad_space_ids.1", "placement_type") in rules
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": camp["id"],
                "name": "Wrong publisher",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1,
                "publisher_ids": [other["id"]],
                "ad_space_ids": [banner["id"]],
            },
        ),
        422,
    )
    assert ("ad_space_ids.0", "publisher") in {(f["field"], f["rule"]) for f in out["error"]["fields"]}
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": camp["id"],
                "name": "No banner at other",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1,
                "publisher_ids": [other["id"]],
            },
        ),
        422,
    )
    assert out["error"]["fields"][0]["rule"] == "placement_type"
    group = ad_group(api, adv, camp["id"], publisher_ids=[pub["id"]], ad_space_ids=[banner["id"]])
    assert group["publisher_ids"] == [pub["id"]] and group["ad_space_ids"] == [banner["id"]]


def test_review_transitions_and_rejection_history(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    group = ad_group(api, adv, campaign(api, adv)["id"])
    url = f"/api/v1/ad-groups/{group['id']}"
    expect(api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "approve"}), 409)
    submitted = expect(api.client.post(f"{url}/submit", headers=adv.headers), 200)
    assert submitted["review_status"] == "under_review" and submitted["expected_review_at"]
    queue = expect(api.client.get("/api/v1/review/queue?object_type=ad_group", headers=admin.headers), 200)
    assert [i["object_id"] for i in queue] == [group["id"]]
    expect(api.client.post(f"{url}/review", headers=adv.headers, json={"decision": "approve"}), 403)
    rejected = expect(
        api.client.post(
            f"{url}/review", headers=admin.headers, json={"decision": "reject", "reasons": ["landing page broken"]}
        ),
        200,
    )
    assert rejected["review_status"] == "rejected" and rejected["serving_status"] == "rejected"
    assert "landing page broken" in rejected["serving_reason"]
    expect(api.client.post(f"{url}/submit", headers=adv.headers), 200)
    approved = expect(api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "approve"}), 200)
    assert approved["review_status"] == "approved" and approved["rejection_reasons"] == ""
    history = expect(api.client.get(f"/api/v1/review/history/ad_group/{group['id']}", headers=adv.headers), 200)
    assert [h["action"] for h in history] == ["submit", "reject", "submit", "approve"]
    assert history[1]["reasons"] == ["landing page broken"]


def test_quick_edit_keeps_approval_and_reviewed_field_sends_back(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    camp = campaign(api, adv)
    group = approved_ad_group(api, adv, admin, camp["id"])
    url = f"/api/v1/ad-groups/{group['id']}"
    quick = expect(
        api.client.patch(
            url,
            headers=adv.headers,
            json={"name": "Renamed", "bid_micros": 300_000, "daily_budget_micros": 60_000_000, "status": "paused"},
        ),
        200,
    )
    assert quick["review_status"] == "approved" and quick["notice"] is None
    assert quick["name"] == "Renamed" and quick["bid_micros"] == 300_000 and quick["status"] == "paused"
    # PATCH touches only the fields sent.
    assert quick["targeting"]["countries"] == ["ID"] and quick["total_budget_micros"] == 500_000_000
    reviewed = expect(api.client.patch(url, headers=adv.headers, json={"targeting": {"countries": ["ID", "IN"]}}), 200)
    assert reviewed["review_status"] == "under_review"
    assert "targeting" in reviewed["notice"] and "back to review" in reviewed["notice"]
    # A campaign's package name change sends its approved ad groups back too.
    expect(api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "approve"}), 200)
    out = expect(
        api.client.patch(
            f"/api/v1/campaigns/{camp['id']}", headers=adv.headers, json={"package_name": "com.example.other"}
        ),
        200,
    )
    assert "1 approved ad group" in out["notice"]
    assert expect(api.client.get(url, headers=adv.headers), 200)["review_status"] == "under_review"
    renamed = expect(
        api.client.patch(f"/api/v1/campaigns/{camp['id']}", headers=adv.headers, json={"name": "Only a name"}), 200
    )
    assert renamed["notice"] is None


def test_operation_log_has_before_and_after(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv, campaign(api, adv)["id"])
    expect(api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers, json={"bid_micros": 250_000}), 200)
    log = expect(
        api.client.get(f"/api/v1/operation-logs?object_type=ad_group&q={group['id']}", headers=adv.headers), 200
    )
    operations = [e["operation"] for e in log["items"]]
    assert operations == ["update", "create"]
    change = log["items"][0]["changes"]
    assert change == [{"field": "bid_micros", "old": 200_000, "new": 250_000}]


def test_serving_status_follows_money_and_budgets(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    camp = campaign(api, adv)
    group = approved_ad_group(
        api, adv, admin, camp["id"], total_budget_micros=10_000_000, daily_budget_micros=4_000_000
    )
    ad_space(api, admin, publisher(api, admin)["id"])  # serving needs somewhere to show it, and a creative
    approved_creative(api, adv, admin, group["id"])
    url = f"/api/v1/ad-groups/{group['id']}"
    assert expect(api.client.get(url, headers=adv.headers), 200)["serving_status"] == "balance_insufficient"
    ledger(api.session, adv.account_id, 100_000_000)
    assert expect(api.client.get(url, headers=adv.headers), 200)["serving_status"] == "eligible"
    apply_charge(api.session, charge_id="status-1", account_id=adv.account_id, campaign_id=group["campaign_id"],
                 ad_group_id=group["id"], creative_id=0, amount_micros=4_000_000, kind="cpc", occurred_at=utcnow())
    api.session.commit()
    out = expect(api.client.get(url, headers=adv.headers), 200)
    assert out["serving_status"] == "daily_budget_exhausted" and out["spend_micros"] == 4_000_000
    expect(
        api.client.patch(
            url, headers=adv.headers, json={"total_budget_micros": 4_000_000, "daily_budget_micros": None}
        ),
        200,
    )
    assert expect(api.client.get(url, headers=adv.headers), 200)["serving_status"] == "budget_exhausted"
    # A refund gives the budget back, as billing counts it: the status follows.
    expect(api.client.post("/api/v1/finance/refunds", headers=admin.headers,
                           json={"charge_id": "status-1", "remarks": "invalid traffic"}), 201)
    assert expect(api.client.get(url, headers=adv.headers), 200)["serving_status"] == "eligible"
    expect(
        api.client.post(
            "/api/v1/campaigns/batch-status", headers=adv.headers, json={"ids": [camp["id"]], "action": "pause"}
        ),
        200,
    )
    assert expect(api.client.get(url, headers=adv.headers), 200)["serving_status"] == "campaign_paused"
    # Account sent back to review stops its ads.
    expect(
        api.client.patch(
            f"/api/v1/accounts/{adv.account_id}", headers=adv.headers, json={"company_name": "New name Ltd"}
        ),
        200,
    )
    expect(
        api.client.post(
            "/api/v1/campaigns/batch-status", headers=adv.headers, json={"ids": [camp["id"]], "action": "enable"}
        ),
        200,
    )
    assert expect(api.client.get(url, headers=adv.headers), 200)["serving_status"] == "account_under_review"


def test_reviewer_and_account_manager_roles(api: Api) -> None:
    manager = api.admin(Role.ACCOUNT_MANAGER)
    expect(api.client.post("/api/v1/ad-groups/1/review", headers=manager.headers, json={"decision": "approve"}), 403)


def test_an_account_in_utc_plus_14_reports_in_it_and_names_its_ad_groups_zone(api: Api) -> None:
    """Accounts and reports may be in any place's zone; an ad group keeps to the guide's UTC-12..UTC+12, so it
    does not silently take an account zone outside it."""
    from tests.campaigns.helpers import campaign

    admin = api.admin()
    adv = api.approved_account(admin, time_zone="Pacific/Kiritimati")
    report = api.client.get("/api/v1/reports", headers=adv.headers, params={
        "start_date": "2025-05-20", "end_date": "2025-05-20", "time_zone": "Pacific/Kiritimati"})
    assert expect(report, 200)["time_zone"] == "Pacific/Kiritimati"
    perf = campaign(api, adv)
    body = {"campaign_id": perf["id"], "name": "Zone", "placement_type": "banner", "bid_type": "cpc",
            "bid_micros": 300_000, "targeting": {"countries": ["ID"]}}
    refused = expect(api.client.post("/api/v1/ad-groups", headers=adv.headers, json=body), 422)["error"]["fields"]
    assert [(f["field"], f["rule"], f["limit"]) for f in refused] == [("time_zone", "guide_range", "UTC-12..UTC+12")]
    made = expect(api.client.post("/api/v1/ad-groups", headers=adv.headers,
                                  json={**body, "time_zone": "Pacific/Tongatapu"}), 422)
    assert made["error"]["fields"][0]["field"] == "time_zone"  # +13: outside the guide's range too
    expect(api.client.post("/api/v1/ad-groups", headers=adv.headers, json={**body, "time_zone": "Pacific/Auckland"}),
           201)
