from __future__ import annotations

from datetime import UTC, datetime

from adstack.campaigns.enums import ServingStatus
from adstack.campaigns.models import AdGroup
from adstack.campaigns.serving_status import ad_group_serving_status, serving_statuses
from tests.audiences.helpers import gaids, id_file, upload
from tests.campaigns.helpers import ad_group, ad_space, approved_ad_group, campaign, ledger, publisher
from tests.serving.test_api import approved_creative
from tests.support import Actor, Api, expect


def test_other_tenants_objects_answer_404_and_agencies_reach_sub_accounts(api: Api) -> None:
    admin = api.admin()
    owner = api.approved_account(admin)
    stranger = api.approved_account(admin)
    camp = campaign(api, owner)
    group = ad_group(api, owner, camp["id"])
    for method, path, body in [
        ("get", f"/api/v1/campaigns/{camp['id']}", None),
        ("patch", f"/api/v1/campaigns/{camp['id']}", {"name": "mine now"}),
        ("delete", f"/api/v1/campaigns/{camp['id']}", None),
        ("post", f"/api/v1/campaigns/{camp['id']}/copy", {}),
        ("get", f"/api/v1/ad-groups/{group['id']}", None),
        ("patch", f"/api/v1/ad-groups/{group['id']}", {"bid_micros": 1}),
        ("delete", f"/api/v1/ad-groups/{group['id']}", None),
        ("post", f"/api/v1/ad-groups/{group['id']}/submit", None),
        ("post", f"/api/v1/ad-groups/{group['id']}/copy", {}),
    ]:
        response = api.client.request(method, path, headers=stranger.headers, json=body)
        assert response.status_code == 404, (method, path, response.text)
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=stranger.headers,
            json={
                "campaign_id": camp["id"],
                "name": "Into their campaign",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1,
            },
        ),
        422,
    )
    assert out["error"]["fields"][0]["field"] == "campaign_id"
    expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=stranger.headers,
            json={
                "account_id": owner.account_id,
                "objective": "performance",
                "name": "x",
                "promotion_type": "app_download",
                "package_name": "com.x.y",
            },
        ),
        404,
    )
    assert expect(api.client.get("/api/v1/ad-groups", headers=stranger.headers), 200)["total"] == 0
    expect(api.client.get(f"/api/v1/campaigns?account_id={owner.account_id}", headers=stranger.headers), 404)

    agency = api.approved_account(admin, type="agency")
    sub_id = api.sub_account(agency, admin)
    sub_campaign = campaign(api, agency, account_id=sub_id)
    assert sub_campaign["account_id"] == sub_id
    expect(api.client.get(f"/api/v1/campaigns/{camp['id']}", headers=agency.headers), 404)
    listed = expect(api.client.get("/api/v1/campaigns", headers=agency.headers), 200)
    assert [c["id"] for c in listed["items"]] == [sub_campaign["id"]]
    # Platform staff see everything.
    assert expect(api.client.get("/api/v1/campaigns", headers=admin.headers), 200)["total"] == 2


def test_service_status_matches_list_status_and_dayparting_in_zone(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    ledger(api.session, adv.account_id, 50_000_000)
    grid = [[False] * 24 for _ in range(7)]
    grid[0][9] = True  # Mondays 09:00-10:00 in Jakarta
    group = approved_ad_group(
        api,
        adv,
        admin,
        campaign(api, adv)["id"],
        time_zone="Asia/Jakarta",
        dayparting=grid,
        start_at="2025-01-01T00:00:00+07:00",
    )
    ad_space(api, admin, publisher(api, admin)["id"])
    approved_creative(api, adv, admin, group["id"])
    row = api.session.get(AdGroup, group["id"])
    assert row is not None
    monday_0930_jakarta = datetime(2025, 6, 9, 2, 30, tzinfo=UTC)
    monday_0930_utc = datetime(2025, 6, 9, 9, 30, tzinfo=UTC)
    assert ad_group_serving_status(api.session, row, now=monday_0930_jakarta)[0] == ServingStatus.ELIGIBLE
    status, reason = ad_group_serving_status(api.session, row, now=monday_0930_utc)
    assert status == ServingStatus.OUT_OF_SCHEDULE and "Asia/Jakarta" in reason
    for moment in (monday_0930_jakarta, monday_0930_utc):
        assert serving_statuses(api.session, [row], now=moment)[row.id] == ad_group_serving_status(
            api.session, row, now=moment
        )


def test_estimate_from_the_population_table(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    expect(
        api.client.put(
            "/api/v1/device-populations/ID",
            headers=admin.headers,
            json={
                "daily_active_devices": 1_000_000,
                "shares": {"gender": {"male": 0.6, "female": 0.4}, "os_version": {"11": 0.5, "12": 0.3, "13": 0.2}},
                "impressions_per_device": {"banner": 2.0, "interstitial": 0.5},
            },
        ),
        200,
    )
    expect(
        api.client.put(
            "/api/v1/device-populations/VN",
            headers=admin.headers,
            json={"daily_active_devices": 500_000, "shares": {}, "impressions_per_device": {"banner": 1.0}},
        ),
        200,
    )

    def estimate(**body: object) -> dict[str, object]:
        return expect(api.client.post("/api/v1/ad-groups/estimate", headers=adv.headers, json=body), 200)

    one = estimate(
        placement_type="banner", targeting={"countries": ["ID"], "genders": ["female"], "os_version_min": "12"}
    )
    # 1,000,000 x 0.4 (female) x 0.5 (OS 12 and 13)
    assert one["users"] == 200_000
    assert one["estimated_max_daily_impressions"] == 400_000
    assert one["estimated_max_users"] == round(200_000 * (1 - 2.718281828459045**-2.0))
    assert one["countries"] == ["ID"] and one["unestimated"] == []
    capped = estimate(
        placement_type="banner",
        frequency_cap_per_day=1,
        targeting={
            "countries": ["ID"],
            "genders": ["female"],
            "os_version_min": "12",
            "installed_apps": ["com.example.app"],
        },
    )
    assert capped["estimated_max_daily_impressions"] == 200_000 and capped["unestimated"] == ["installed_apps"]
    both = estimate(placement_type="banner", targeting={"countries": ["ID", "VN"]})
    assert both["users"] == 1_500_000 and both["estimated_max_daily_impressions"] == 2_500_000
    # Publishers restrict the reach to their countries.
    pub = publisher(api, admin, country="VN")
    ad_space(api, admin, pub["id"])
    only_vn = estimate(placement_type="banner", targeting={"countries": ["ID", "VN"]}, publisher_ids=[pub["id"]])
    assert only_vn["users"] == 500_000 and only_vn["countries"] == ["VN"]
    # Operators' edits change the estimate.
    expect(
        api.client.put(
            "/api/v1/device-populations/VN",
            headers=admin.headers,
            json={"daily_active_devices": 800_000, "impressions_per_device": {"banner": 1.0}},
        ),
        200,
    )
    assert estimate(placement_type="banner", targeting={"countries": ["VN"]})["users"] == 800_000
    bad = expect(
        api.client.post(
            "/api/v1/ad-groups/estimate",
            headers=adv.headers,
            json={"placement_type": "banner", "publisher_ids": [999_999]},
        ),
        422,
    )
    assert bad["error"]["fields"][0]["field"] == "publisher_ids.0"
    expect(api.client.put("/api/v1/device-populations/VN", headers=adv.headers, json={"daily_active_devices": 1}), 403)


def _stored_audience(api: Api, actor: Actor, size: int, *, seed: int = 1, name: str = "") -> int:
    """An uploaded audience of `size` devices (the seed picks which)."""
    out = upload(api, actor, id_file(gaids(size, seed=seed)), name=name or f"Payers {size}")
    return int(out["audience"]["id"])


def test_audiences_belong_to_the_account_and_cap_the_estimate(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    other = api.approved_account(admin)
    mine = _stored_audience(api, adv, 1_000)
    theirs = _stored_audience(api, other, 5_000)
    camp = campaign(api, adv)
    out = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": camp["id"],
                "name": "Audiences",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 1,
                "targeting": {"include_audience_ids": [mine], "exclude_audience_ids": [theirs]},
            },
        ),
        422,
    )
    assert [(f["field"], f["rule"]) for f in out["error"]["fields"]] == [("targeting.exclude_audience_ids.0", "exists")]
    group = ad_group(api, adv, camp["id"], targeting={"countries": ["ID"], "include_audience_ids": [mine]})
    assert group["targeting"]["include_audience_ids"] == [mine]
    capped = expect(
        api.client.post(
            "/api/v1/ad-groups/estimate",
            headers=adv.headers,
            json={"placement_type": "banner", "targeting": {"countries": ["ID"], "include_audience_ids": [mine]}},
        ),
        200,
    )
    assert capped["users"] == 1_000 and capped["source"] == "device_population_table+audiences"
    assert "include_audience_ids" not in capped["unestimated"]
    expect(
        api.client.post(
            "/api/v1/ad-groups/estimate",
            headers=adv.headers,
            json={"placement_type": "banner", "targeting": {"include_audience_ids": [theirs]}},
        ),
        422,
    )


def test_audiences_holding_the_same_devices_cap_the_estimate_once(api: Api) -> None:
    adv = api.approved_account()
    same = [_stored_audience(api, adv, 1_000, seed=7, name=f"Copy {n}") for n in range(3)]
    other = _stored_audience(api, adv, 1_000, seed=8, name="Others")
    reach = expect(api.client.get("/api/v1/audiences/reach", headers=adv.headers, params={"include": same}), 200)
    assert reach == {"size": 1_000, "exact": True}

    def estimated_users(audience_ids: list[int]) -> int:
        body = {"placement_type": "banner", "targeting": {"countries": ["ID"], "include_audience_ids": audience_ids}}
        return int(expect(api.client.post("/api/v1/ad-groups/estimate", headers=adv.headers, json=body), 200)["users"])

    # A device in several included audiences is one device, as the reach endpoint counts it.
    assert estimated_users(same) == 1_000
    assert estimated_users([*same, other]) == 2_000
