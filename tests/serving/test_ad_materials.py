"""The guide's creative-wide materials (business phone, subtitles, buttons 1 and 2, background colour, top button,
a video's cover image) reach the SDK ad response and the Native 1.2 assets that have a place for them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from adstack.finance.models import EntryType
from adstack.serving.engine import Decision
from adstack.serving.openrtb.markup import native_markup
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, publisher
from tests.creatives.helpers import Files, guide_creative
from tests.serving import support
from tests.serving.test_api import ad_request, ads_now, eventually
from tests.support import Api, expect


def _serve(api: Api, code: str, placement: str, **materials: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """An approved creative of `code` in an ad group alone on its ad space, and the ad served for it."""
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    pub = publisher(api, admin)
    space = ad_space(api, admin, pub["id"], placement_type=placement, accepted_formats=[code], sizes=[])
    group = approved_ad_group(
        api,
        actor,
        admin,
        campaign(api, actor)["id"],
        placement_type=placement,
        bid_type="cpc",
        bid_micros=300_000,
        ad_space_ids=[space["id"]],
    )
    body = guide_creative(api, actor, group["id"], code, Files(api, actor))
    body["materials"].update(materials)
    created = expect(api.client.post("/api/v1/creatives", headers=actor.headers, json=body), 201)
    expect(api.client.post(f"/api/v1/creatives/{created['id']}/submit", headers=actor.headers), 200)
    expect(
        api.client.post(
            f"/api/v1/creatives/{created['id']}/review", headers=admin.headers, json={"decision": "approve"}
        ),
        200,
    )
    assert eventually(lambda: bool(ads_now(api.client, space["id"])))
    (ad,) = expect(ad_request(api.client, space["id"]), 200)["ads"]
    return body, ad


def test_an_sms_card_carries_its_phone_subtitles_and_two_buttons(api: Api) -> None:
    body, ad = _serve(api, "sms_business", "sms", business_phone="+65 9123 4567", button_2="Call now")
    materials = body["materials"]
    assert ad["format"] == "sms_business"
    assert ad["business_phone"] == "+6591234567"  # stored and served in E.164
    assert ad["business_name"] == materials["business_name"]
    assert ad["subtitles"] == materials["subtitles"]
    assert (ad["button_1"], ad["button_2"]) == (materials["button_1"], "Call now")
    assert ad["description"] == materials["descriptions"][0]
    assert ad["cover_image_url"] == "" and ad["top_button"] is False and ad["background_color"] == ""


def test_a_video_ad_carries_its_cover_image(api: Api) -> None:
    _, ad = _serve(api, "interstitial_video", "interstitial")
    assert ad["video_url"].startswith("http://testserver/media/")
    assert ad["cover_image_url"].startswith("http://testserver/media/") and ad["cover_image_url"] != ad["video_url"]
    assert (ad["cover_width"], ad["cover_height"]) == (720, 1280)  # the uploaded cover's real size
    cover = api.client.get(ad["cover_image_url"].split("testserver", 1)[1])
    assert cover.status_code == 200 and cover.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("code", "placement", "field", "value"),
    [
        ("large_image", "push", "top_button", True),
        ("custom_background", "icon", "background_color", "#1A73E8"),
    ],
)
def test_a_card_carries_its_top_button_flag_and_background(
    api: Api, code: str, placement: str, field: str, value: Any
) -> None:
    _, ad = _serve(api, code, placement)
    assert ad[field] == value


def test_the_openapi_types_the_new_fields(api: Api) -> None:
    schema = expect(api.client.get("/openapi.json"), 200)["components"]["schemas"]["AdOut"]["properties"]
    assert schema["business_phone"]["type"] == "string" and schema["top_button"]["type"] == "boolean"
    assert schema["subtitles"]["items"]["type"] == "string"
    assert {"button_1", "button_2", "background_color", "cover_image_url"} <= set(schema)


def _decision(creative: Any) -> Decision:
    group = support.group(7, creatives=(creative,), campaign_name="Summer installs")
    combination = creative.combinations[0]
    return Decision(
        ad_group=group,
        creative=creative,
        combination=combination,
        tier="auction",
        ecpm_usd_micros=1.0,
        price_micros=1,
        bid_usd_cpm_micros=1.0,
        impression_id="imp1",
        pctr=0.01,
        pcvr=0.0,
        claims=(),
        ad_space=None,
    )


def _assets(decision: Decision, assets: list[dict[str, Any]]) -> dict[int, Any] | None:
    made = native_markup(
        decision,
        {"assets": assets},
        click_url="https://t.example/c",
        impression_urls=["https://t.example/i"],
        video_xml=None,
    )
    return None if made is None else {a["id"]: a for a in made["assets"]}


def test_native_data_assets_carry_phone_subtitles_sponsor_and_button() -> None:
    creative = support.creative(
        7,
        business_name="Shopee",
        business_phone="+6591234567",
        subtitles=("Open daily", "Free delivery"),
        button_1="Shop now",
    )
    creative = replace(creative, combinations=tuple(replace(c, button="") for c in creative.combinations))
    filled = _assets(
        _decision(creative),
        [
            {"id": 1, "required": 1, "data": {"type": 8}},
            {"id": 2, "data": {"type": 10}},
            {"id": 3, "data": {"type": 1}},
            {"id": 4, "data": {"type": 12, "len": 4}},
        ],
    )
    assert filled is not None
    assert filled[1]["data"]["value"] == "+6591234567"
    assert filled[2]["data"]["value"] == "Open daily Free delivery"
    assert filled[3]["data"]["value"] == "Shopee"
    assert filled[4]["data"]["value"] == "Shop"  # button 1 stands in for the call to action, cut to len


def test_native_without_a_phone_cannot_fill_a_required_phone_asset() -> None:
    creative = support.creative(7)
    assert _assets(_decision(creative), [{"id": 1, "required": 1, "data": {"type": 8}}]) is None
    # The sponsor falls back to the campaign's name.
    filled = _assets(_decision(creative), [{"id": 1, "data": {"type": 1}}])
    assert filled is not None and filled[1]["data"]["value"] == "Summer installs"


def test_a_video_creatives_cover_is_its_main_image_where_it_fits() -> None:
    creative = support.creative(
        7,
        video=True,
        width=1280,
        height=720,
        cover_image_url="https://cdn.example/c.jpg",
        cover_width=1280,
        cover_height=720,
    )
    main = {"id": 5, "required": 1, "img": {"type": 3, "wmin": 600, "hmin": 300}}
    filled = _assets(_decision(creative), [main])
    assert filled is not None and filled[5]["img"] == {"url": "https://cdn.example/c.jpg", "w": 1280, "h": 720}
    # A cover smaller than the asset's minimum is not offered.
    assert _assets(_decision(creative), [{**main, "img": {"type": 3, "wmin": 1920, "hmin": 1080}}]) is None
    # An icon asset is not filled with the cover.
    no_icon = replace(creative, combinations=tuple(replace(c, icon_url="") for c in creative.combinations))
    assert _assets(_decision(no_icon), [{"id": 6, "required": 1, "img": {"type": 1}}]) is None
