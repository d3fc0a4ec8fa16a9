"""Creatives over HTTP with real uploaded files: rules, review, status, lists, preview, tenancy, log."""

from __future__ import annotations

from typing import Any

from adstack.accounts import auth
from adstack.accounts.models import User
from adstack.creatives import service as creatives
from adstack.creatives.models import Creative
from adstack.finance.models import EntryType, LedgerEntry
from tests.campaigns.helpers import ad_space, publisher
from tests.creatives.helpers import ad_group, create, fields_of, interstitial_body, upload
from tests.media.samples import mp4, png
from tests.support import Actor, Api, expect


def test_create_submit_approve_and_serving_status(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    group = ad_group(api, adv)
    creative = create(api, adv, interstitial_body(api, adv, group["id"]))
    assert (creative["review_status"], creative["status"]) == ("to_be_submitted", "enabled")
    assert creative["serving_status"] == "to_be_submitted"
    assert creative["campaign_id"] == group["campaign_id"]
    assert creative["materials"]["titles"] == ["Play the summer event"]

    submitted = expect(api.client.post(f"/api/v1/creatives/{creative['id']}/submit", headers=adv.headers), 200)
    assert submitted["review_status"] == submitted["serving_status"] == "under_review"
    assert submitted["expected_review_at"] is not None
    queue = expect(api.client.get("/api/v1/review/queue?object_type=creative", headers=admin.headers), 200)
    assert [i["object_id"] for i in queue] == [creative["id"]]

    approved = expect(
        api.client.post(
            f"/api/v1/creatives/{creative['id']}/review", headers=admin.headers, json={"decision": "approve"}
        ),
        200,
    )
    assert approved["review_status"] == "approved"
    # Now the ad group decides: it has not been submitted yet.
    assert approved["serving_status"] == "to_be_submitted"
    assert approved["serving_reason"].startswith("ad group:")

    expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=adv.headers), 200)
    expect(
        api.client.post(f"/api/v1/ad-groups/{group['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )
    current = expect(api.client.get(f"/api/v1/creatives/{creative['id']}", headers=adv.headers), 200)
    assert current["serving_status"] == "no_inventory"  # no interstitial ad space exists yet
    ad_space(
        api,
        admin,
        publisher(api, admin)["id"],
        placement_type="interstitial",
        accepted_formats=["interstitial_image"],
        sizes=["1200x628"],
    )
    current = expect(api.client.get(f"/api/v1/creatives/{creative['id']}", headers=adv.headers), 200)
    assert current["serving_status"] == "balance_insufficient"

    api.session.add(
        LedgerEntry(
            account_id=adv.account_id, entry_type=EntryType.TOP_UP.value, amount_micros=100_000_000, currency="USD"
        )
    )
    api.session.commit()
    assert (
        expect(api.client.get(f"/api/v1/creatives/{creative['id']}", headers=adv.headers), 200)["serving_status"]
        == "eligible"
    )


def test_wrong_size_image_and_31_character_title_are_refused_field_by_field(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv)
    body = interstitial_body(api, adv, group["id"])
    body["materials"]["titles"] = ["T" * 31]
    body["materials"]["images"] = [upload(api, adv, png(1000, 500))]
    error = expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 422)
    fields = fields_of(error)
    assert fields["materials.titles.0"] | {"message": ""} == {
        "field": "materials.titles.0",
        "rule": "max_length",
        "limit": 30,
        "actual": 31,
        "message": "",
    }
    assert (
        fields["materials.images.0"]["rule"],
        fields["materials.images.0"]["limit"],
        fields["materials.images.0"]["actual"],
    ) == ("image_size", ["1200x628"], "1000x500")
    assert expect(api.client.get("/api/v1/creatives", headers=adv.headers), 200)["total"] == 0


def test_image_over_the_kb_cap_is_refused(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv)
    heavy = png(1200, 628, noise=True)
    assert len(heavy) > 500 * 1024
    body = interstitial_body(api, adv, group["id"])
    body["materials"]["images"].append(upload(api, adv, heavy, "heavy.png"))
    field = fields_of(expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 422))[
        "materials.images.1"
    ]
    assert (field["rule"], field["limit"], field["actual"]) == ("max_size_kb", 500, -(-len(heavy) // 1024))


def test_videos_are_checked_from_the_container(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv, "rewarded_video")
    body = interstitial_body(api, adv, group["id"], format="rewarded_video")
    body["materials"]["images"] = []
    body["materials"]["cover_image"] = upload(api, adv, png(720, 1280), "cover.png")
    body["materials"]["videos"] = [upload(api, adv, mp4(3, 1280, 720), "clip.mp4")]
    created = create(api, adv, body)
    assert created["format"] == "rewarded_video"

    # Too long: 31 s.
    body["materials"]["videos"] = [upload(api, adv, mp4(31, 1280, 720), "long.mp4")]
    long = fields_of(expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 422))
    assert (long["materials.videos.0"]["rule"], long["materials.videos.0"]["actual"]) == ("max_duration_s", 31.0)

    # A PNG cannot stand in for a video, whatever it was called.
    body["materials"]["videos"] = [upload(api, adv, png(1280, 720), "clip.png")]
    wrong = fields_of(expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 422))
    assert (wrong["materials.videos.0"]["rule"], wrong["materials.videos.0"]["actual"]) == ("file_format", "png")
    renamed = api.client.post("/api/v1/media", headers=adv.headers, files={"file": ("clip.mp4", png(1280, 720))})
    assert renamed.status_code == 422


def test_format_must_fit_the_ad_groups_placement(api: Api) -> None:
    adv = api.approved_account()
    banner = ad_group(api, adv, "banner")
    error = expect(
        api.client.post("/api/v1/creatives", headers=adv.headers, json=interstitial_body(api, adv, banner["id"])), 422
    )
    field = fields_of(error)["format"]
    assert (field["rule"], field["actual"]) == ("placement_type", "interstitial_image")
    assert "image_640x100" in field["limit"] and "interstitial_image" not in field["limit"]
    unknown = interstitial_body(api, adv, banner["id"], format="hologram")
    assert expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=unknown), 422)


def test_urls_are_checked(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv)
    body = interstitial_body(api, adv, group["id"])
    for bad in (
        {"click_url": "javascript:alert(1)"},
        {"click_url": "ftp://x.example.com"},
        {"impression_urls": ["https://a.example.com"] * 6},
        {"video_tracking": {"start": ["nope"]}},
    ):
        error = expect(api.client.post("/api/v1/creatives", headers=adv.headers, json={**body, **bad}), 422)
        assert error["error"]["fields"][0]["field"].split(".")[0] == next(iter(bad))
    ok = create(
        api,
        adv,
        {
            **body,
            "deeplink": "mygame://level/1",
            "video_tracking": {"start": ["https://t.example.com/s"], "third_quartile": ["https://t.example.com/q3"]},
        },
    )
    assert ok["video_tracking"]["start"] == ["https://t.example.com/s"]
    assert ok["deeplink"] == "mygame://level/1"


def test_tenants_cannot_use_or_see_each_others_creatives_and_media(api: Api) -> None:
    admin = api.admin()
    owner, other = api.approved_account(admin), api.approved_account(admin)
    group = ad_group(api, owner)
    creative = create(api, owner, interstitial_body(api, owner, group["id"]))
    # Another tenant's media cannot be used, and looks like a missing id.
    foreign_image = upload(api, owner, png(1200, 628))
    other_group = ad_group(api, other)
    body = interstitial_body(api, other, other_group["id"])
    body["materials"]["images"] = [foreign_image]
    field = fields_of(expect(api.client.post("/api/v1/creatives", headers=other.headers, json=body), 422))[
        "materials.images.0"
    ]
    assert (field["rule"], field["actual"]) == ("not_found", foreign_image)

    cid = creative["id"]
    assert api.client.get(f"/api/v1/creatives/{cid}", headers=other.headers).status_code == 404
    assert api.client.patch(f"/api/v1/creatives/{cid}", headers=other.headers, json={"name": "x"}).status_code == 404
    assert api.client.post(f"/api/v1/creatives/{cid}/submit", headers=other.headers).status_code == 404
    assert api.client.get(f"/api/v1/creatives/{cid}/preview", headers=other.headers).status_code == 404
    assert api.client.delete(f"/api/v1/creatives/{cid}", headers=other.headers).status_code == 404
    assert expect(api.client.get("/api/v1/creatives", headers=other.headers), 200)["total"] == 0
    stolen_group = interstitial_body(api, other, group["id"])
    assert api.client.post("/api/v1/creatives", headers=other.headers, json=stolen_group).status_code == 404


def test_review_rejection_history_and_edits_send_approved_creatives_back(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    cid = create(api, adv, interstitial_body(api, adv, ad_group(api, adv)["id"]))["id"]
    url = f"/api/v1/creatives/{cid}"
    assert api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "approve"}).status_code == 409
    expect(api.client.post(f"{url}/submit", headers=adv.headers), 200)
    assert api.client.post(f"{url}/review", headers=adv.headers, json={"decision": "approve"}).status_code == 403
    expect(api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "reject"}), 422)
    rejected = expect(
        api.client.post(
            f"{url}/review",
            headers=admin.headers,
            json={"decision": "reject", "reasons": ["blurry image", "misleading"]},
        ),
        200,
    )
    assert rejected["serving_status"] == "rejected"
    assert "blurry image" in rejected["serving_reason"]

    edited = expect(api.client.patch(url, headers=adv.headers, json={"click_url": "https://example.com/v2"}), 200)
    assert edited["review_status"] == "rejected" and edited["notice"] is None
    expect(api.client.post(f"{url}/submit", headers=adv.headers), 200)
    expect(api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "approve"}), 200)
    history = expect(api.client.get(f"{url}/rejections", headers=adv.headers), 200)
    assert [h["reasons"] for h in history] == [["blurry image", "misleading"]]

    renamed = expect(api.client.patch(url, headers=adv.headers, json={"name": "Renamed"}), 200)
    assert (renamed["review_status"], renamed["notice"]) == ("approved", None)
    body = interstitial_body(api, adv, renamed["ad_group_id"])
    body["materials"]["titles"] = ["A brand new title"]
    changed = expect(api.client.patch(url, headers=adv.headers, json={"materials": body["materials"]}), 200)
    assert changed["review_status"] == "under_review"
    assert "materials" in changed["notice"] and "back to review" in changed["notice"]
    # Invalid edits change nothing.
    body["materials"]["titles"] = ["x" * 31]
    expect(api.client.patch(url, headers=adv.headers, json={"materials": body["materials"]}), 422)
    assert expect(api.client.get(url, headers=adv.headers), 200)["materials"]["titles"] == ["A brand new title"]
    assert expect(api.client.patch(url, headers=adv.headers, json={"name": None}), 422)


def test_status_delete_and_lists(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv)
    other_group = ad_group(api, adv, campaign_id=group["campaign_id"])
    body = interstitial_body(api, adv, group["id"])
    ids = [create(api, adv, {**body, "name": name})["id"] for name in ("Bravo", "alpha", "Charlie")]
    moved = create(api, adv, {**body, "ad_group_id": other_group["id"], "name": "Delta"})["id"]

    paused = expect(
        api.client.post(f"/api/v1/creatives/{ids[0]}/status", headers=adv.headers, json={"status": "paused"}), 200
    )
    assert (paused["status"], paused["serving_status"]) == ("paused", "paused")
    expect(api.client.post(f"/api/v1/creatives/{ids[2]}/submit", headers=adv.headers), 200)
    deleted = expect(api.client.delete(f"/api/v1/creatives/{ids[1]}", headers=adv.headers), 200)
    assert deleted["status"] == "deleted" and deleted["deleted_at"] is not None
    assert api.client.patch(f"/api/v1/creatives/{ids[1]}", headers=adv.headers, json={"name": "x"}).status_code == 409

    def listing(query: str) -> list[int]:
        return [
            c["id"] for c in expect(api.client.get(f"/api/v1/creatives?{query}", headers=adv.headers), 200)["items"]
        ]

    assert listing("") == [moved, ids[2], ids[0]]
    assert listing("include_deleted=true&sort=name&order=asc") == [ids[1], ids[0], ids[2], moved]
    assert listing(f"ad_group_id={other_group['id']}") == [moved]
    assert set(listing(f"campaign_id={group['campaign_id']}")) == {ids[0], ids[2], moved}
    assert listing("review_status=under_review") == [ids[2]]
    assert listing("serving_status=paused") == [ids[0]]
    assert listing("serving_status=to_be_submitted") == [moved]
    assert listing("q=char") == [ids[2]]
    assert listing(f"q={moved}") == [moved]
    page = expect(api.client.get("/api/v1/creatives?limit=2&offset=1&sort=id&order=asc", headers=adv.headers), 200)
    assert page["total"] == 3 and [c["id"] for c in page["items"]] == [ids[2], moved]


def test_preview_escapes_materials(api: Api) -> None:
    adv = api.approved_account()
    body = interstitial_body(api, adv, ad_group(api, adv)["id"])
    body["materials"]["titles"] = ["<script>alert(1)</script>"]
    body["materials"]["button_texts"] = ['Go"><img>']
    body["click_url"] = 'https://example.com/?a=1&b="x"'
    cid = create(api, adv, body)["id"]
    response = api.client.get(f"/api/v1/creatives/{cid}/preview", headers=adv.headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Go&#34;&gt;&lt;img&gt;" in html
    assert "b=&#34;x&#34;" in html
    assert "script-src" not in response.headers["content-security-policy"]
    media = expect(api.client.get(f"/api/v1/media/{body['materials']['images'][0]}", headers=adv.headers), 200)
    assert f'src="{media["url"]}"' in html

    unsaved = {"format": "interstitial_image", "materials": {**body["materials"], "titles": ["x" * 31]}}
    live = api.client.post("/api/v1/creatives/preview", headers=adv.headers, json=unsaved)
    assert live.status_code == 200
    assert "materials.titles.0" in live.text and "x" * 31 in live.text


def test_combinations_endpoint(api: Api) -> None:
    adv = api.approved_account()
    body = interstitial_body(api, adv, ad_group(api, adv)["id"])
    body["materials"]["images"].append(upload(api, adv, png(1200, 628), "second.png"))
    body["materials"]["button_texts"] = ["Install", "Play"]
    cid = create(api, adv, body)["id"]
    combos = expect(api.client.get(f"/api/v1/creatives/{cid}/combinations", headers=adv.headers), 200)
    assert len(combos) == 2 * 1 * 2 * 2
    assert len({c["key"] for c in combos}) == 8


def test_operation_log_records_before_and_after(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    cid = create(api, adv, interstitial_body(api, adv, ad_group(api, adv)["id"]))["id"]
    expect(api.client.patch(f"/api/v1/creatives/{cid}", headers=adv.headers, json={"name": "Renamed"}), 200)
    expect(api.client.post(f"/api/v1/creatives/{cid}/submit", headers=adv.headers), 200)
    expect(
        api.client.post(
            f"/api/v1/creatives/{cid}/review", headers=admin.headers, json={"decision": "reject", "reasons": ["logo"]}
        ),
        200,
    )
    log = expect(api.client.get(f"/api/v1/operation-logs?object_type=creative&q={cid}", headers=adv.headers), 200)
    operations = [e["operation"] for e in reversed(log["items"])]
    assert operations == ["create", "update", "submit", "reject"]
    by_op = {e["operation"]: {c["field"]: (c["old"], c["new"]) for c in e["changes"]} for e in log["items"]}
    assert by_op["update"] == {"name": ("Summer sale", "Renamed")}
    assert by_op["submit"]["review_status"] == ("to_be_submitted", "under_review")
    assert by_op["reject"]["rejection_reasons"] == ("", "logo")
    assert by_op["create"]["click_url"] == (None, "https://example.com/landing?src=mi")


def test_formats_endpoint(api: Api) -> None:
    assert api.client.get("/api/v1/creative-formats").status_code == 401
    adv = api.approved_account()
    specs = expect(api.client.get("/api/v1/creative-formats", headers=adv.headers), 200)
    interstitial = next(s for s in specs if s["code"] == "interstitial_image")
    assert interstitial["images"]["max_kb"] == 500 and interstitial["titles"]["max_chars"] == 30
    sms = expect(api.client.get("/api/v1/creative-formats?placement_type=sms", headers=adv.headers), 200)
    assert {s["code"] for s in sms} == {"sms_image", "sms_business", "rich_media_business"}
    assert api.client.get("/api/v1/creative-formats/nope", headers=adv.headers).status_code == 404


def test_a_title_with_a_control_character_is_refused_over_http(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv, "push")
    body: dict[str, Any] = {
        "ad_group_id": group["id"],
        "name": "Parcel update",
        "format": "push_standard",
        "materials": {"titles": ["Your parcel\x0bis here"], "descriptions": ["On its way"],
                      "icon": upload(api, adv, png(180, 180), "icon.png")},
        "click_url": "https://example.com/track",
    }
    fields = fields_of(expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 422))
    assert (fields["materials.titles.0"]["rule"], fields["materials.titles.0"]["actual"]) == (
        "no_control_characters", "U+000B")


def test_push_standard_rules_from_the_push_format_page_over_http(api: Api) -> None:
    adv = api.approved_account()
    group = ad_group(api, adv, "push")
    body: dict[str, Any] = {
        "ad_group_id": group["id"],
        "name": "Parcel update",
        "format": "push_standard",
        "materials": {
            "titles": ["Your parcel is on its way 🚚"],
            "descriptions": ["d" * 41],
            "icon": upload(api, adv, png(181, 180), "icon.png"),
        },
        "click_url": "https://example.com/track",
    }
    fields = fields_of(expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 422))
    assert (fields["materials.titles.0"]["rule"], fields["materials.titles.0"]["actual"]) == ("no_emoji", "🚚")
    assert (fields["materials.descriptions.0"]["rule"], fields["materials.descriptions.0"]["limit"]) == (
        "max_length",
        40,
    )
    assert (fields["materials.icon"]["rule"], fields["materials.icon"]["limit"]) == ("image_size", ["180x180"])

    body["materials"] = {
        "titles": ["Your parcel is on its way"],
        "descriptions": ["d" * 40],
        "icon": upload(api, adv, png(180, 180), "icon.png"),
    }
    assert create(api, adv, body)["format"] == "push_standard"


def _principal(api: Api, actor: Actor) -> Any:
    user = api.session.get(User, actor.user_id)
    assert user is not None
    return auth.principal_for(user)


def test_copy_and_cascade_delete_for_the_campaign_domain(api: Api) -> None:
    adv = api.approved_account()
    source, target = ad_group(api, adv), ad_group(api, adv)
    banner = ad_group(api, adv, "banner")
    first = create(api, adv, interstitial_body(api, adv, source["id"]))
    create(api, adv, interstitial_body(api, adv, source["id"], name="Second"))
    expect(api.client.post(f"/api/v1/creatives/{first['id']}/submit", headers=adv.headers), 200)
    principal = _principal(api, adv)

    copies = creatives.copy_creatives(
        api.session, principal, from_ad_group_id=source["id"], to_ad_group_id=target["id"]
    )
    api.session.commit()
    assert [c.name for c in copies] == ["Summer sale", "Second"]
    assert {c.review_status for c in copies} == {"to_be_submitted"}
    assert copies[0].materials == first["materials"]

    import pytest

    from adstack.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        creatives.copy_creatives(api.session, principal, from_ad_group_id=source["id"], to_ad_group_id=banner["id"])
    api.session.rollback()

    assert creatives.delete_creatives_of(api.session, principal, ad_group_ids=[source["id"]]) == 2
    api.session.commit()
    left = api.session.query(Creative).filter(Creative.ad_group_id == source["id"]).all()
    assert {c.status for c in left} == {"deleted"}
    assert creatives.delete_creatives_of(api.session, principal, ad_group_ids=[source["id"]]) == 0
