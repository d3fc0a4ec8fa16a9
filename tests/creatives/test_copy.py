"""POST /creatives/{id}/copy: a new creative with the original's materials, reviewed like any new one."""

from __future__ import annotations

from typing import Any

from tests.campaigns.helpers import approved_ad_group, campaign, creative
from tests.support import Actor, Api, expect


def _approved_creative(api: Api) -> tuple[Actor, Actor, dict[str, Any], dict[str, Any], dict[str, Any]]:
    admin = api.admin()
    adv = api.approved_account(admin)
    camp = campaign(api, adv)
    group = approved_ad_group(api, adv, admin, camp["id"])
    made = creative(api, adv, group["id"], name="Spring banner")
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=adv.headers), 200)
    approved = expect(
        api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )
    assert approved["review_status"] == "approved"
    return admin, adv, camp, group, approved


def test_a_copy_keeps_the_materials_and_is_reviewed_anew(api: Api) -> None:
    admin, adv, camp, group, original = _approved_creative(api)
    copy = expect(api.client.post(f"/api/v1/creatives/{original['id']}/copy", headers=adv.headers, json={}), 201)
    assert copy["id"] != original["id"] and copy["name"] == "Spring banner - copy"
    assert copy["ad_group_id"] == group["id"] and copy["campaign_id"] == camp["id"]
    for field in ("format", "materials", "click_url", "deeplink", "impression_urls", "video_tracking"):
        assert copy[field] == original[field], field
    # An approval belongs to the creative that was reviewed, never to its copy.
    assert copy["review_status"] == "to_be_submitted"
    assert (
        expect(api.client.get(f"/api/v1/creatives/{original['id']}", headers=adv.headers), 200)["review_status"]
        == "approved"
    )
    submitted = expect(
        api.client.post(
            f"/api/v1/creatives/{original['id']}/copy",
            headers=adv.headers,
            json={"name": "Autumn banner", "submit": True},
        ),
        201,
    )
    assert submitted["name"] == "Autumn banner" and submitted["review_status"] == "under_review"
    queue = expect(
        api.client.get("/api/v1/review/queue", headers=admin.headers, params={"object_type": "creative"}), 200
    )
    assert submitted["id"] in {item["object_id"] for item in queue}
    log = expect(api.client.get("/api/v1/operation-logs", headers=adv.headers, params={"operation": "copy"}), 200)
    assert {e["object_id"] for e in log["items"]} == {copy["id"], submitted["id"]}


def test_a_copy_goes_to_another_ad_group_of_the_account_when_it_fits(api: Api) -> None:
    admin, adv, camp, _, original = _approved_creative(api)
    second = approved_ad_group(api, adv, admin, campaign(api, adv, name="Second")["id"], name="Second banner")
    moved = expect(
        api.client.post(
            f"/api/v1/creatives/{original['id']}/copy", headers=adv.headers, json={"ad_group_id": second["id"]}
        ),
        201,
    )
    assert moved["ad_group_id"] == second["id"] and moved["campaign_id"] == second["campaign_id"]
    splash = approved_ad_group(api, adv, admin, camp["id"], name="Splash", placement_type="interstitial")
    refused = expect(
        api.client.post(
            f"/api/v1/creatives/{original['id']}/copy", headers=adv.headers, json={"ad_group_id": splash["id"]}
        ),
        422,
    )
    fields = refused["error"]["fields"]
    assert fields[0]["field"] == "format" and fields[0]["rule"] == "placement_type"
    assert "image_640x100" not in fields[0]["limit"]


def test_copies_stay_inside_the_tenant(api: Api) -> None:
    admin, adv, _, _, original = _approved_creative(api)
    other = api.approved_account(admin)
    theirs = approved_ad_group(api, other, admin, campaign(api, other)["id"])
    before = expect(api.client.get("/api/v1/creatives", headers=other.headers), 200)["total"]
    expect(api.client.post(f"/api/v1/creatives/{original['id']}/copy", headers=other.headers, json={}), 404)
    expect(
        api.client.post(
            f"/api/v1/creatives/{original['id']}/copy", headers=other.headers, json={"ad_group_id": theirs["id"]}
        ),
        404,
    )
    refused = expect(
        api.client.post(
            f"/api/v1/creatives/{original['id']}/copy", headers=adv.headers, json={"ad_group_id": theirs["id"]}
        ),
        404,
    )
    assert refused["error"]["fields"][0]["field"] == "ad_group_id"
    assert expect(api.client.get("/api/v1/creatives", headers=other.headers), 200)["total"] == before
    expect(api.client.post(f"/api/v1/creatives/{original['id']}/copy", json={}), 401)


def test_copy_refusals_name_the_field(api: Api) -> None:
    _, adv, _, group, original = _approved_creative(api)
    long_name = expect(
        api.client.patch(f"/api/v1/creatives/{original['id']}", headers=adv.headers, json={"name": "n" * 100}), 200
    )
    copy = expect(api.client.post(f"/api/v1/creatives/{long_name['id']}/copy", headers=adv.headers, json={}), 201)
    assert len(copy["name"]) == 100 and copy["name"].endswith(" - copy")
    too_long = expect(
        api.client.post(f"/api/v1/creatives/{original['id']}/copy", headers=adv.headers, json={"name": "x" * 101}), 422
    )
    assert too_long["error"]["fields"][0]["field"] == "name"
    assert too_long["error"]["fields"][0]["limit"] == 100
    unknown = expect(
        api.client.post(f"/api/v1/creatives/{original['id']}/copy", headers=adv.headers, json={"deep": True}), 422
    )
    assert unknown["error"]["fields"][0]["field"] == "deep"
    expect(api.client.delete(f"/api/v1/creatives/{original['id']}", headers=adv.headers), 200)
    gone = expect(api.client.post(f"/api/v1/creatives/{original['id']}/copy", headers=adv.headers, json={}), 409)
    assert gone["error"]["code"] == "invalid_state"
    missing = expect(
        api.client.post(
            f"/api/v1/creatives/{copy['id']}/copy", headers=adv.headers, json={"ad_group_id": group["id"] + 1000}
        ),
        404,
    )
    assert missing["error"]["fields"][0]["field"] == "ad_group_id"
