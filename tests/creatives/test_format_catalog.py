"""The operator-editable copy of the creative formats: edited by platform admins, re-seeded from formats.py on
migrate with the edits kept."""

from __future__ import annotations

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from adstack.core.bootstrap import seed
from adstack.creatives.models import CreativeFormatRules
from tests.creatives.helpers import Files, ad_group, guide_creative
from tests.creatives.helpers import padded_png as heavy
from tests.support import Api, expect

EDITS = "/api/v1/creative-formats/interstitial_image/edits"


def test_an_admin_edit_changes_the_rules_in_force(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    group = ad_group(api, adv, "interstitial")
    files = Files(api, adv)
    body = guide_creative(api, adv, group["id"], "interstitial_image", files)
    body["materials"]["images"] = [files._get(("heavy", 550), lambda: heavy(1200, 628, 550), "heavy.png")]
    refused = expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 422)
    assert refused["error"]["fields"][0]["limit"] == 500

    assert api.client.put(EDITS, headers=adv.headers, json={"edits": {"images": {"max_kb": 600}}}).status_code == 403
    edited = expect(api.client.put(EDITS, headers=admin.headers, json={"edits": {"images": {"max_kb": 600}}}), 200)
    assert edited["images"]["max_kb"] == 600 and edited["images"]["sizes"] == [{"width": 1200, "height": 628}]
    shown = expect(api.client.get("/api/v1/creative-formats/interstitial_image", headers=adv.headers), 200)
    assert shown["images"]["max_kb"] == 600
    expect(api.client.post("/api/v1/creatives", headers=adv.headers, json=body), 201)

    restored = expect(api.client.put(EDITS, headers=admin.headers, json={"edits": {}}), 200)
    assert restored["images"]["max_kb"] == 500


def test_edits_that_do_not_fit_are_refused_by_name(api: Api) -> None:
    admin = api.admin()

    def refusal(edits: dict[str, object]) -> tuple[str, str]:
        error = expect(api.client.put(EDITS, headers=admin.headers, json={"edits": edits}), 422)
        first = error["error"]["fields"][0]
        return first["field"], first["rule"]

    assert refusal({"hologram": {"max_kb": 1}}) == ("edits.hologram", "enum")
    assert refusal({"business_phone": {"min_count": 0}}) == ("edits.business_phone", "not_in_format")
    assert refusal({"images": {"max_kb": -1}}) == ("edits.images.max_kb", "greater_than_equal")
    assert refusal({"images": {"colour": "red"}}) == ("edits.images.colour", "extra_forbidden")
    assert refusal({"titles": {"min_count": 3}}) == ("edits.titles.min_count", "max")
    assert (
        api.client.put("/api/v1/creative-formats/nope/edits", headers=admin.headers, json={"edits": {}}).status_code
        == 404
    )


def test_migrate_reseeds_from_the_file_and_keeps_the_operators_edits(api: Api, session: Session, db: Engine) -> None:
    admin = api.admin()
    expect(
        api.client.put(
            "/api/v1/creative-formats/large_newsfeed_image/edits",
            headers=admin.headers,
            json={"edits": {"titles": {"max_chars": 25}, "images": {"max_count": 8}}},
        ),
        200,
    )
    # Rules an older release wrote, and a format it had that the file no longer ships.
    stale = {
        "code": "large_newsfeed_image",
        "name": "Old",
        "description": "",
        "source": "",
        "placement_types": [],
        "images": {"sizes": [{"width": 1080, "height": 607}], "max_kb": 500},
    }
    session.execute(
        update(CreativeFormatRules).where(CreativeFormatRules.code == "large_newsfeed_image").values(spec=stale)
    )
    session.add(CreativeFormatRules(code="image_600x500", spec=stale, edits={}))
    session.commit()

    seed(db)

    session.expire_all()
    codes = set(session.scalars(select(CreativeFormatRules.code)))
    assert "image_600x500" not in codes and "sms_image" in codes
    adv = api.approved_account(admin)
    feed = expect(api.client.get("/api/v1/creative-formats/large_newsfeed_image", headers=adv.headers), 200)
    assert feed["images"]["sizes"] == [{"width": 1200, "height": 628}] and feed["images"]["max_kb"] == 500
    assert feed["images"]["max_count"] == 8 and feed["titles"]["max_chars"] == 25
