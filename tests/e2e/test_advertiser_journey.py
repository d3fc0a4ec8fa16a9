"""Issue-level journey over HTTP: admin, registration and approval, campaign → ad group → creative with real
files, field-level refusals, review, serving status without money, and the operation log of every step."""

from __future__ import annotations

from tests.campaigns.helpers import ad_space, publisher
from tests.e2e.media_files import mp4, png
from tests.support import Api, expect


def upload(api: Api, headers: dict[str, str], name: str, content: bytes, content_type: str) -> int:
    body = expect(api.client.post("/api/v1/media", headers=headers, files={"file": (name, content, content_type)}), 201)
    return int(body["id"])


def test_advertiser_journey_with_review_and_operation_log(api: Api) -> None:
    # 1. an admin is created
    admin = api.admin()

    # 2. an advertiser registers and the admin approves it
    advertiser = api.register(company_name="Moonlight Games（Shenzhen）Co., Ltd.")
    headers = advertiser.headers
    assert advertiser.account_id is not None
    api.upload_document(advertiser, advertiser.account_id)
    expect(api.client.post(f"/api/v1/accounts/{advertiser.account_id}/submit", headers=headers), 200)
    queue = expect(api.client.get("/api/v1/review/queue", headers=admin.headers), 200)
    assert ("account", advertiser.account_id) in {(i["object_type"], i["object_id"]) for i in queue}
    expect(
        api.client.post(
            f"/api/v1/accounts/{advertiser.account_id}/review", headers=admin.headers, json={"decision": "approve"}
        ),
        200,
    )

    # 3. campaign, ad group and creative, with real PNG and MP4 uploads
    campaign = expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=headers,
            json={
                "objective": "performance",
                "name": "Moonlight launch",
                "promotion_type": "app_download",
                "package_name": "com.moonlight.game",
            },
        ),
        201,
    )
    ad_group = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=headers,
            json={
                "campaign_id": campaign["id"],
                "name": "ID interstitial",
                "placement_type": "interstitial",
                "bid_type": "cpc",
                "bid_micros": 150_000,
                "daily_budget_micros": 100_000_000,
                "time_zone": "Asia/Jakarta",
                "targeting": {"countries": ["ID"]},
            },
        ),
        201,
    )
    image_id = upload(api, headers, "hero.png", png(1200, 628), "image/png")
    icon_id = upload(api, headers, "icon.png", png(84, 84), "image/png")
    video_id = upload(api, headers, "clip.mp4", mp4(2.0), "video/mp4")
    assert expect(api.client.get(f"/api/v1/media/{video_id}", headers=headers), 200)["duration_ms"] >= 1500
    creative_body = {
        "ad_group_id": ad_group["id"],
        "name": "Hero",
        "format": "interstitial_image",
        "materials": {
            "titles": ["Build your moon base"],
            "descriptions": ["Free to play strategy"],
            "button_texts": ["Install"],
            "images": [image_id],
            "icon": icon_id,
        },
        "click_url": "https://play.google.com/store/apps/details?id=com.moonlight.game",
    }
    creative = expect(api.client.post("/api/v1/creatives", headers=headers, json=creative_body), 201)

    # 4. a wrongly sized image and a 31-character title are refused with field-level errors
    wrong_image = upload(api, headers, "small.png", png(600, 300), "image/png")
    refused = api.client.post(
        "/api/v1/creatives",
        headers=headers,
        json={
            **creative_body,
            "name": "Wrong",
            "materials": {**creative_body["materials"], "titles": ["x" * 31], "images": [wrong_image]},
        },
    )
    assert refused.status_code == 422, refused.text
    fields = {f["field"]: f for f in refused.json()["error"]["fields"]}
    title_error = next(f for name, f in fields.items() if "titles" in name)
    assert title_error["limit"] == 30 and title_error.get("actual") == 31
    image_error = next(f for name, f in fields.items() if "images" in name)
    assert "1200" in str(image_error.get("limit")) and "600" in str(image_error.get("actual"))

    for path in (f"/api/v1/ad-groups/{ad_group['id']}/submit", f"/api/v1/creatives/{creative['id']}/submit"):
        assert expect(api.client.post(path, headers=headers), 200)["review_status"] == "under_review"

    # 5. the admin approves
    for path in (f"/api/v1/ad-groups/{ad_group['id']}/review", f"/api/v1/creatives/{creative['id']}/review"):
        assert (
            expect(api.client.post(path, headers=admin.headers, json={"decision": "approve"}), 200)["review_status"]
            == "approved"
        )

    # 6. the admin offers an interstitial ad space for it; with no money yet the ad group still cannot serve
    ad_space(
        api,
        admin,
        publisher(api, admin)["id"],
        name="Splash",
        placement_type="interstitial",
        accepted_formats=["interstitial_image"],
        sizes=["1200x628"],
    )
    shown = expect(api.client.get(f"/api/v1/ad-groups/{ad_group['id']}", headers=headers), 200)
    assert shown["serving_status"] == "balance_insufficient", shown

    # 7. the operation log shows each step with before and after values
    log = expect(api.client.get("/api/v1/operation-logs", headers=headers, params={"limit": 200}), 200)
    steps = {(e["object_type"], e["operation"]) for e in log["items"]}
    assert {
        ("account", "create"),
        ("account", "submit"),
        ("account", "approve"),
        ("campaign", "create"),
        ("ad_group", "create"),
        ("creative", "create"),
        ("ad_group", "submit"),
        ("creative", "submit"),
        ("ad_group", "approve"),
        ("creative", "approve"),
    } <= steps
    approval = next(e for e in log["items"] if e["object_type"] == "ad_group" and e["operation"] == "approve")
    change = next(c for c in approval["changes"] if c["field"] == "review_status")
    assert (change["old"], change["new"]) == ("under_review", "approved")
    created = next(e for e in log["items"] if e["object_type"] == "ad_group" and e["operation"] == "create")
    assert {"field": "bid_micros", "old": None, "new": 150_000} in created["changes"]
    # Nobody else sees these entries.
    stranger = api.approved_account(admin)
    theirs = expect(api.client.get("/api/v1/operation-logs", headers=stranger.headers, params={"limit": 200}), 200)
    assert all(e["account_id"] == stranger.account_id for e in theirs["items"])
    csv_text = api.client.get("/api/v1/operation-logs/export.csv", headers=headers).text
    assert "review_status,under_review,approved" in csv_text
