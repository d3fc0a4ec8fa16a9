from __future__ import annotations

from typing import Any

from adstack.finance.models import EntryType
from tests.campaigns.helpers import (
    ad_group,
    ad_space,
    approved_ad_group,
    campaign,
    charge,
    creative,
    ledger,
    publisher,
)
from tests.serving.test_api import approved_creative
from tests.support import Api, expect


def _ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


def test_ad_group_list_filters_sort_and_paging(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    ledger(api.session, adv.account_id, 100_000_000)
    pub = publisher(api, admin)
    space = ad_space(api, admin, pub["id"])
    perf = campaign(api, adv, name="Performance")
    brand = campaign(api, adv, objective="brand", name="Brand")
    a = approved_ad_group(api, adv, admin, perf["id"], name="Alpha banner", bid_micros=100)
    approved_creative(api, adv, admin, a["id"])
    b = ad_group(api, adv, perf["id"], name="Beta interstitial", placement_type="interstitial", bid_micros=300)
    c = ad_group(
        api,
        adv,
        brand["id"],
        name="Gamma brand",
        bid_type="guaranteed_cpm",
        bid_micros=200,
        booked_impressions=1_000_000,
        publisher_ids=[pub["id"]],
        ad_space_ids=[space["id"]],
    )
    charge(api.session, adv.account_id, b, 7_000)

    def page(**params: Any) -> dict[str, Any]:
        return expect(api.client.get("/api/v1/ad-groups", headers=adv.headers, params=params), 200)

    everything = page()
    assert everything["total"] == 3 and _ids(everything) == [c["id"], b["id"], a["id"]]
    assert _ids(page(q="beta")) == [b["id"]]
    assert _ids(page(q=str(c["id"]))) == [c["id"]]
    assert _ids(page(objective="brand")) == [c["id"]]
    assert _ids(page(campaign_id=perf["id"], sort="bid_micros", order="asc")) == [a["id"], b["id"]]
    assert _ids(page(placement_type="interstitial")) == [b["id"]]
    assert _ids(page(review_status="approved")) == [a["id"]]
    assert _ids(page(serving_status="eligible")) == [a["id"]]
    assert _ids(page(serving_status="to_be_submitted", sort="name", order="asc")) == [b["id"], c["id"]]
    # Gamma names the publisher; Alpha runs on all publishers, and this one offers banners; Beta's interstitial
    # it does not offer.
    assert _ids(page(publisher_id=pub["id"])) == [c["id"], a["id"]]
    by_spend = page(sort="spend_micros", order="desc", limit=1)
    assert by_spend["total"] == 3 and _ids(by_spend) == [b["id"]] and by_spend["items"][0]["spend_micros"] == 7_000
    second = page(sort="name", order="asc", limit=1, offset=1)
    assert second["total"] == 3 and _ids(second) == [b["id"]]
    expect(api.client.get("/api/v1/ad-groups", headers=adv.headers, params={"sort": "secret"}), 422)
    expect(api.client.get("/api/v1/ad-groups", headers=adv.headers, params={"limit": 501}), 422)


def test_every_list_level_honours_the_placement_publisher_and_objective_filters(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    banners = publisher(api, admin, name="Banner app", app_package="com.mi.banners")
    ad_space(api, admin, banners["id"])
    full_screen = publisher(api, admin, name="Full-screen app", app_package="com.mi.fullscreen")
    full_space = ad_space(
        api,
        admin,
        full_screen["id"],
        name="Splash",
        placement_type="interstitial",
        accepted_formats=["image_1080x1920"],
        sizes=["1080x1920"],
    )
    perf = campaign(api, adv, name="Performance")
    brand = campaign(api, adv, objective="brand", name="Brand")
    everywhere = ad_group(api, adv, perf["id"], name="All banner publishers")
    named = ad_group(
        api,
        adv,
        brand["id"],
        name="Named banner publisher",
        publisher_ids=[banners["id"]],
        bid_type="guaranteed_cpm",
        booked_impressions=1_000_000,
    )
    by_space = ad_group(
        api, adv, perf["id"], name="One splash space", placement_type="interstitial", ad_space_ids=[full_space["id"]]
    )
    on_everywhere = creative(api, adv, everywhere["id"], name="On every banner publisher")
    on_named = creative(api, adv, named["id"], name="On the named publisher")
    levels = {
        "campaigns": {"everywhere": perf["id"], "named": brand["id"], "by_space": perf["id"]},
        "ad-groups": {"everywhere": everywhere["id"], "named": named["id"], "by_space": by_space["id"]},
        "creatives": {"everywhere": on_everywhere["id"], "named": on_named["id"]},
    }
    cases = [
        ({"placement_type": "banner"}, {"everywhere", "named"}),
        ({"placement_type": "interstitial"}, {"by_space"}),
        ({"objective": "brand"}, {"named"}),
        ({"objective": "performance"}, {"everywhere", "by_space"}),
        ({"publisher_id": banners["id"]}, {"everywhere", "named"}),
        ({"publisher_id": full_screen["id"]}, {"by_space"}),
        ({"publisher_id": banners["id"], "objective": "performance"}, {"everywhere"}),
    ]
    for level, ids in levels.items():
        for params, expected in cases:
            out = expect(api.client.get(f"/api/v1/{level}", headers=adv.headers, params=params), 200)
            wanted = {ids[k] for k in expected if k in ids}
            assert set(_ids(out)) == wanted and out["total"] == len(wanted), (level, params, _ids(out))
    # A publisher of no ad space runs nothing; another tenant's filters see none of these.
    idle = publisher(api, admin, name="Idle app", app_package="com.mi.idle")
    assert (
        expect(api.client.get("/api/v1/creatives", headers=adv.headers, params={"publisher_id": idle["id"]}), 200)[
            "total"
        ]
        == 0
    )
    other = api.approved_account(admin)
    assert (
        expect(api.client.get("/api/v1/creatives", headers=other.headers, params={"publisher_id": banners["id"]}), 200)[
            "total"
        ]
        == 0
    )


def test_list_schemas_are_typed_in_openapi(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for path, read in (
        ("/api/v1/campaigns", "CampaignRead"),
        ("/api/v1/ad-groups", "AdGroupRead"),
        ("/api/v1/creatives", "CreativeRead"),
        ("/api/v1/publishers", "PublisherRead"),
        ("/api/v1/ad-spaces", "AdSpaceRead"),
        ("/api/v1/operation-logs", "ChangeEventRead"),
    ):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        page = components[ok["$ref"].rsplit("/", 1)[1]]
        assert page["properties"]["items"]["items"] == {"$ref": f"#/components/schemas/{read}"}
        assert page["properties"]["total"]["type"] == "integer"


def test_campaign_list_filters_and_spend_totals(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    ledger(api.session, adv.account_id, 100_000_000)
    perf = campaign(api, adv, name="Installs ID")
    brand = campaign(api, adv, objective="brand", name="Launch")
    group = approved_ad_group(api, adv, admin, perf["id"])
    ad_space(api, admin, publisher(api, admin)["id"])
    approved_creative(api, adv, admin, group["id"])
    charge(api.session, adv.account_id, group, 1_500_000)
    out = expect(api.client.get("/api/v1/campaigns", headers=adv.headers), 200)
    assert out["total"] == 2 and _ids(out) == [brand["id"], perf["id"]]
    first = out["items"][1]
    assert first["spend_micros"] == 1_500_000 and first["ad_group_count"] == 1
    assert first["serving_status"] == "eligible"
    # A refund nets the spend shown, as it nets the reports' cost.
    ledger(api.session, adv.account_id, 500_000, EntryType.REFUND, campaign_id=perf["id"], ad_group_id=group["id"])
    refunded = expect(api.client.get("/api/v1/campaigns", headers=adv.headers), 200)["items"][1]
    assert refunded["spend_micros"] == 1_000_000
    assert out["items"][0]["serving_status"] == "no_active_ad_groups"
    assert _ids(expect(api.client.get("/api/v1/campaigns?objective=brand", headers=adv.headers), 200)) == [brand["id"]]
    assert _ids(expect(api.client.get("/api/v1/campaigns?serving_status=eligible", headers=adv.headers), 200)) == [
        perf["id"]
    ]
    assert _ids(expect(api.client.get("/api/v1/campaigns?placement_type=banner", headers=adv.headers), 200)) == [
        perf["id"]
    ]
    assert _ids(expect(api.client.get("/api/v1/campaigns?q=launch", headers=adv.headers), 200)) == [brand["id"]]
    paused = expect(
        api.client.post(
            "/api/v1/campaigns/batch-status", headers=adv.headers, json={"ids": [brand["id"]], "action": "pause"}
        ),
        200,
    )
    assert paused["results"] == [{"id": brand["id"], "ok": True, "status": "paused", "error": None}]
    assert _ids(expect(api.client.get("/api/v1/campaigns?status=paused", headers=adv.headers), 200)) == [brand["id"]]


def test_cascade_delete_keeps_costs_in_parent_totals(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    ledger(api.session, adv.account_id, 100_000_000)
    camp = campaign(api, adv)
    keep = approved_ad_group(api, adv, admin, camp["id"], name="Keep")
    gone = approved_ad_group(api, adv, admin, camp["id"], name="Gone")
    made = creative(api, adv, gone["id"])
    charge(api.session, adv.account_id, keep, 1_000_000)
    charge(api.session, adv.account_id, gone, 2_000_000, creative_id=made["id"])
    deleted = expect(api.client.delete(f"/api/v1/ad-groups/{gone['id']}", headers=adv.headers), 200)
    assert deleted["status"] == "deleted" and deleted["serving_status"] == "deleted"
    assert deleted["deleted_at"] is not None and deleted["spend_micros"] == 2_000_000
    assert expect(api.client.get(f"/api/v1/creatives/{made['id']}", headers=adv.headers), 200)["status"] == "deleted"
    parent = expect(api.client.get(f"/api/v1/campaigns/{camp['id']}", headers=adv.headers), 200)
    assert parent["spend_micros"] == 3_000_000 and parent["ad_group_count"] == 1
    listed = expect(api.client.get("/api/v1/ad-groups", headers=adv.headers), 200)
    assert _ids(listed) == [keep["id"]]
    assert _ids(expect(api.client.get("/api/v1/ad-groups?status=deleted", headers=adv.headers), 200)) == [gone["id"]]
    expect(api.client.patch(f"/api/v1/ad-groups/{gone['id']}", headers=adv.headers, json={"name": "x"}), 409)
    # Deleting the campaign takes the rest of the hierarchy with it.
    expect(api.client.delete(f"/api/v1/campaigns/{camp['id']}", headers=adv.headers), 200)
    assert expect(api.client.get(f"/api/v1/ad-groups/{keep['id']}", headers=adv.headers), 200)["status"] == "deleted"
    gone_campaign = expect(api.client.get(f"/api/v1/campaigns/{camp['id']}", headers=adv.headers), 200)
    assert gone_campaign["status"] == "deleted" and gone_campaign["spend_micros"] == 3_000_000
    log = expect(api.client.get("/api/v1/operation-logs?operation=delete", headers=adv.headers), 200)
    assert {(e["object_type"], e["object_id"]) for e in log["items"]} == {
        ("ad_group", gone["id"]),
        ("creative", made["id"]),
        ("ad_group", keep["id"]),
        ("campaign", camp["id"]),
    }


def test_batch_status_reports_each_item(api: Api) -> None:
    adv = api.approved_account()
    other = api.approved_account()
    camp = campaign(api, adv)
    mine = ad_group(api, adv, camp["id"])
    theirs = ad_group(api, other, campaign(api, other)["id"])
    out = expect(
        api.client.post(
            "/api/v1/ad-groups/batch-status",
            headers=adv.headers,
            json={"ids": [mine["id"], theirs["id"]], "action": "pause"},
        ),
        200,
    )
    assert out["results"][0]["ok"] and out["results"][0]["status"] == "paused"
    assert not out["results"][1]["ok"] and out["results"][1]["error"]["code"] == "not_found"
    assert expect(api.client.get(f"/api/v1/ad-groups/{theirs['id']}", headers=other.headers), 200)["status"] == (
        "enabled"
    )


def test_quick_copy_and_deep_copy(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    camp = campaign(api, adv, name="Original")
    group = approved_ad_group(api, adv, admin, camp["id"], name="Group", dayparting=[[True] * 24] * 7)
    made = creative(api, adv, group["id"])
    draft = expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/copy", headers=adv.headers, json={}), 201)
    assert draft["name"] == "Group - copy" and draft["review_status"] == "to_be_submitted"
    assert draft["campaign_id"] == camp["id"] and draft["targeting"] == group["targeting"]
    assert draft["dayparting"] == group["dayparting"] and draft["bid_micros"] == group["bid_micros"]
    no_creatives = expect(api.client.get(f"/api/v1/creatives?ad_group_id={draft['id']}", headers=adv.headers), 200)
    assert no_creatives["total"] == 0
    quick = expect(api.client.post(f"/api/v1/campaigns/{camp['id']}/copy", headers=adv.headers, json={}), 201)
    assert quick["name"] == "Original - copy" and quick["ad_group_count"] == 0
    deep = expect(
        api.client.post(
            f"/api/v1/campaigns/{camp['id']}/copy", headers=adv.headers, json={"name": "Deep", "deep": True}
        ),
        201,
    )
    assert deep["ad_group_count"] == 2
    groups = expect(
        api.client.get(f"/api/v1/ad-groups?campaign_id={deep['id']}&sort=id&order=asc", headers=adv.headers), 200
    )["items"]
    assert [g["name"] for g in groups] == ["Group", "Group - copy"]
    assert all(g["review_status"] == "to_be_submitted" for g in groups)
    copies = expect(api.client.get(f"/api/v1/creatives?ad_group_id={groups[0]['id']}", headers=adv.headers), 200)
    assert copies["total"] == 1 and copies["items"][0]["name"] == made["name"]
    assert copies["items"][0]["id"] != made["id"] and copies["items"][0]["review_status"] == "to_be_submitted"


def test_batch_mutate_all_or_nothing_partial_failure_and_validate_only(api: Api) -> None:
    adv = api.approved_account()
    camp = campaign(api, adv)
    ops = [
        {
            "object_type": "campaign",
            "action": "create",
            "id": -1,
            "body": {
                "objective": "performance",
                "name": "Batch",
                "promotion_type": "non_download",
                "landing_kind": "website",
                "landing_url": "https://example.com",
            },
        },
        {
            "object_type": "ad_group",
            "action": "create",
            "body": {
                "campaign_id": -1,
                "name": "Batch group",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1000,
            },
        },
        {"object_type": "campaign", "action": "update", "id": camp["id"], "body": {"name": "x" * 101}},
        {"object_type": "campaign", "action": "pause", "id": camp["id"]},
    ]

    def campaigns_total() -> int:
        return int(expect(api.client.get("/api/v1/campaigns", headers=adv.headers), 200)["total"])

    failed = expect(api.client.post("/api/v1/batch", headers=adv.headers, json={"operations": ops}), 422)
    assert failed["error"]["code"] == "batch_failed"
    assert failed["error"]["fields"][0]["field"] == "operations.2.body.name"
    assert failed["error"]["fields"][0]["rule"] == "string_too_long"
    assert campaigns_total() == 1
    assert expect(api.client.get(f"/api/v1/campaigns/{camp['id']}", headers=adv.headers), 200)["status"] == "enabled"

    checked = expect(
        api.client.post(
            "/api/v1/batch",
            headers=adv.headers,
            json={"operations": ops, "partial_failure": True, "validate_only": True},
        ),
        200,
    )
    assert [r["ok"] for r in checked["results"]] == [True, True, False, True]
    assert checked["applied"] == 0 and all(r["id"] is None for r in checked["results"])
    assert campaigns_total() == 1

    partial = expect(
        api.client.post("/api/v1/batch", headers=adv.headers, json={"operations": ops, "partial_failure": True}), 200
    )
    assert [r["ok"] for r in partial["results"]] == [True, True, False, True]
    assert partial["applied"] == 3
    assert partial["results"][2]["error"]["fields"][0]["field"] == "body.name"
    new_campaign, new_group = partial["results"][0]["id"], partial["results"][1]["id"]
    group = expect(api.client.get(f"/api/v1/ad-groups/{new_group}", headers=adv.headers), 200)
    assert group["campaign_id"] == new_campaign
    assert expect(api.client.get(f"/api/v1/campaigns/{camp['id']}", headers=adv.headers), 200)["status"] == "paused"

    whole = expect(
        api.client.post(
            "/api/v1/batch",
            headers=adv.headers,
            json={
                "operations": [
                    {"object_type": "campaign", "action": "enable", "id": camp["id"]},
                    {"object_type": "ad_group", "action": "update", "id": new_group, "body": {"bid_micros": 2000}},
                    {"object_type": "creative", "action": "delete", "id": 999_999},
                ],
                "partial_failure": True,
            },
        ),
        200,
    )
    assert [r["ok"] for r in whole["results"]] == [True, True, False]
    assert whole["results"][2]["error"]["code"] == "not_found"
    assert expect(api.client.get(f"/api/v1/ad-groups/{new_group}", headers=adv.headers), 200)["bid_micros"] == 2000
    expect(
        api.client.post(
            "/api/v1/batch",
            headers=adv.headers,
            json={"operations": [{"object_type": "campaign", "action": "update", "body": {"name": "no id"}}]},
        ),
        422,
    )
    expect(api.client.post("/api/v1/batch", headers=adv.headers, json={"operations": []}), 422)


def test_name_searches_take_percent_and_underscore_literally(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    made = {name: campaign(api, adv, name=name)["id"] for name in ("50% off", "500 off", "win_back", "winxback")}

    def found(q: str) -> list[int]:
        return sorted(_ids(expect(api.client.get("/api/v1/campaigns", headers=adv.headers, params={"q": q}), 200)))

    assert found("50%") == [made["50% off"]]
    assert found("n_b") == [made["win_back"]]
    assert found("%") == [made["50% off"]]
    # Staff's account search escapes the same way: no company is named with a bare %.
    accounts = expect(api.client.get("/api/v1/accounts", headers=admin.headers, params={"q": "%"}), 200)
    assert [a["company_name"] for a in accounts if "%" not in a["company_name"]] == []
