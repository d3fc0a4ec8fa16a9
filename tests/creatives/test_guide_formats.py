"""Every format of the Mi Ads Usage Guide's "Upload ad material information", tried as a user would: materials
built exactly to the guide are accepted, and a material that breaks any one of its rules is refused with the
field, the rule and the limit. The rules below are copied from the guide, not from formats.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.creatives.helpers import PLACEMENT_OF, Files, ad_group, guide_creative
from tests.support import Api

JPEG_OR_PNG = ["jpeg", "png"]

# Source: Mi Ads Usage Guide, 3.1.3 "Create Ad Creative", "Upload ad material information", one entry per format
# heading (the unnamed blocks as PLACEMENT_OF names them). Images and icons: (size or None, KB cap, up to N);
# videos: up to N; texts: (characters, up to N, optional).
GUIDE: dict[str, dict[str, Any]] = {
    "interstitial_image": {
        "images": ((1200, 628), 500, 5),
        "icon": ((84, 84), 100),
        "titles": (30, 1, False),
        "descriptions": (80, 3, False),
        "button_texts": (15, 3, False),
    },
    "interstitial_video": {
        "videos": 5,
        "cover_image": (None, 500),
        "icon": ((84, 84), 100),
        "titles": (30, 1, False),
        "descriptions": (80, 3, False),
        "button_texts": (15, 3, False),
    },
    "rewarded_video": {
        "videos": 5,
        "cover_image": (None, 500),
        "icon": ((84, 84), 100),
        "titles": (30, 1, False),
        "descriptions": (80, 3, False),
        "button_texts": (15, 3, False),
    },
    "large_image": {
        "images": ((800, 360), 1024, 5),
        "icon": ((180, 180), 100),
        "titles": (30, 1, False),
        "descriptions": (40, 3, False),
        "top_button": True,
    },
    "push_standard": {
        "icon": ((180, 180), 100),
        "titles": (30, 1, False),
        "descriptions": (40, 3, False),
        "no_emoji": True,
    },
    "custom_background": {
        "icon": ((180, 120), 100),
        "titles": (30, 1, False),
        "descriptions": (40, 3, False),
        "background_color": True,
    },
    "icon_small_card": {"icon": ((84, 84), 100), "titles": (30, 1, False), "descriptions": (80, 1, False)},
    "newsfeed_video": {
        "videos": 5,
        "icon": ((84, 84), 100),
        "titles": (30, 1, False),
        "descriptions": (80, 3, False),
        "button_texts": (15, 3, False),
    },
    "large_newsfeed_image": {
        "images": ((1200, 628), 500, 10),
        "icon": ((84, 84), 100),
        "titles": (30, 1, False),
        "descriptions": (80, 3, False),
        "button_texts": (15, 3, False),
    },
    "ota_app_recommendations": {"icon": ((84, 84), 100), "titles": (30, 1, False), "descriptions": (80, 1, False)},
    "startup_guide_app_download": {"icon": ((84, 84), 100), "titles": (30, 1, False), "descriptions": (80, 1, False)},
    "ota_mandatory_pre_install": {"icon": ((84, 84), 100), "titles": (30, 1, False), "descriptions": (80, 1, False)},
    "image_640x100": {"images": ((640, 100), 500, 5)},
    "sms_image": {
        "images": ((600, 500), 500, 5),
        "icon": ((180, 180), 100),
        "business_phone": True,
        "business_name": 9,
        "descriptions": (40, 1, False),
        "url_required": True,
    },
    "sms_business": {
        "business_phone": True,
        "business_name": 9,
        "subtitles": (30, 3, True),
        "descriptions": (40, 1, False),
        "url_required": True,
        "button_1": 28,
        "button_2": 28,
    },
    "rich_media_business": {
        "icon": ((800, 450), 200),
        "business_phone": True,
        "business_name": 9,
        "descriptions": (40, 1, False),
        "url_required": True,
        "button_1": 28,
    },
    "wallpaper_carousel": {
        "images": ((720, 1600), 500, 1),
        "icon": ((84, 84), 100),
        "titles": (30, 1, False),
        "descriptions": (80, 1, False),
        "button_texts": (15, 1, False),
    },
}

Change = Callable[[Files, dict[str, Any]], None]
Case = tuple[str, Change, str, str, Any]  # label, change, field, rule, limit


def _set(key: str, value: Callable[[Files], Any]) -> Change:
    def change(files: Files, materials: dict[str, Any]) -> None:
        materials[key] = value(files)

    return change


def _cases(rules: dict[str, Any]) -> list[Case]:
    cases: list[Case] = []
    if "images" in rules:
        (w, h), kb, up_to = rules["images"]
        cases += [
            (
                "image of another size",
                _set("images", lambda f, w=w, h=h: [f.png(w + 1, h)]),
                "materials.images.0",
                "image_size",
                [f"{w}x{h}"],
            ),
            (
                "image over the KB cap",
                _set("images", lambda f, w=w, h=h, kb=kb: [f.heavy_png(w, h, kb + 1)]),
                "materials.images.0",
                "max_size_kb",
                kb,
            ),
            (
                "GIF image",
                _set("images", lambda f, w=w, h=h: [f.gif(w, h)]),
                "materials.images.0",
                "file_format",
                JPEG_OR_PNG,
            ),
            (
                "one image too many",
                _set("images", lambda f, w=w, h=h, n=up_to: [f.png(w, h, c) for c in range(n + 1)]),
                "materials.images",
                "max_count",
                up_to,
            ),
            ("no image", _set("images", lambda f: []), "materials.images", "required", 1),
        ]
    if "videos" in rules:
        up_to = rules["videos"]
        cases += [
            ("video over 30 s", _set("videos", lambda f: [f.video(31)]), "materials.videos.0", "max_duration_s", 30),
            (
                "video over 10 MB",
                _set("videos", lambda f: [f.heavy_video(10)]),
                "materials.videos.0",
                "max_size_kb",
                10 * 1024,
            ),
            (
                "image as the video",
                _set("videos", lambda f: [f.png(64, 36)]),
                "materials.videos.0",
                "file_format",
                ["mp4"],
            ),
            (
                "one video too many",
                _set("videos", lambda f, n=up_to: [f.video(2, c) for c in range(n + 1)]),
                "materials.videos",
                "max_count",
                up_to,
            ),
            ("no video", _set("videos", lambda f: []), "materials.videos", "required", 1),
        ]
    for name in ("icon", "cover_image"):
        if name in rules:
            size, kb = rules[name]
            w, h = size or (720, 1280)
            if size:
                cases.append(
                    (
                        f"{name} of another size",
                        _set(name, lambda f, w=w, h=h: f.png(w + 2, h + 2)),
                        f"materials.{name}",
                        "image_size",
                        [f"{w}x{h}"],
                    )
                )
            cases += [
                (
                    f"{name} over the KB cap",
                    _set(name, lambda f, w=w, h=h, kb=kb: f.heavy_png(w, h, kb + 1)),
                    f"materials.{name}",
                    "max_size_kb",
                    kb,
                ),
                (
                    f"GIF {name}",
                    _set(name, lambda f, w=w, h=h: f.gif(w, h)),
                    f"materials.{name}",
                    "file_format",
                    JPEG_OR_PNG,
                ),
                (f"no {name}", _set(name, lambda f: None), f"materials.{name}", "required", 1),
            ]
    for name in ("titles", "subtitles", "descriptions", "button_texts"):
        if name in rules:
            chars, up_to, optional = rules[name]
            link = " https://e.example.com" if rules.get("url_required") and name == "descriptions" else ""
            cases += [
                (
                    f"{name} over {chars} characters",
                    _set(name, lambda f, c=chars, link=link: [("x" * (c + 1 - len(link))) + link]),
                    f"materials.{name}.0",
                    "max_length",
                    chars,
                ),
                (
                    f"one of {name} too many",
                    _set(name, lambda f, n=up_to, link=link: [f"Text {i}{link}" for i in range(n + 1)]),
                    f"materials.{name}",
                    "max_count",
                    up_to,
                ),
            ]
            if not optional:
                cases.append((f"no {name}", _set(name, lambda f: []), f"materials.{name}", "required", 1))
    for name in ("business_name", "button_1", "button_2"):
        if name in rules:
            chars = rules[name]
            cases += [
                (
                    f"{name} over {chars} characters",
                    _set(name, lambda f, c=chars: "x" * (c + 1)),
                    f"materials.{name}",
                    "max_length",
                    chars,
                ),
                (f"no {name}", _set(name, lambda f: None), f"materials.{name}", "required", 1),
            ]
    if rules.get("url_required"):
        cases.append(
            (
                "description without a URL",
                _set("descriptions", lambda f: ["Deals all week"]),
                "materials.descriptions.0",
                "url_required",
                "http(s) URL",
            )
        )
    if rules.get("business_phone"):
        cases += [
            (
                "phone that is not a number",
                _set("business_phone", lambda f: "call us"),
                "materials.business_phone",
                "e164",
                "E.164, e.g. +6591234567",
            ),
            (
                "phone without country code",
                _set("business_phone", lambda f: "91234567"),
                "materials.business_phone",
                "e164",
                "E.164, e.g. +6591234567",
            ),
            ("no phone", _set("business_phone", lambda f: None), "materials.business_phone", "required", 1),
        ]
    if rules.get("background_color"):
        cases.append(
            (
                "colour by name",
                _set("background_color", lambda f: "blue"),
                "materials.background_color",
                "color_format",
                "#RRGGBB",
            )
        )
    if rules.get("no_emoji"):
        cases.append(
            ("emoji in the title", _set("titles", lambda f: ["Sale \U0001f525"]), "materials.titles.0", "no_emoji", 0)
        )
    # A material the format does not take.
    if not rules.get("top_button"):
        cases.append(("top button flag", _set("top_button", lambda f: True), "materials.top_button", "not_allowed", 0))
    else:
        cases.append(
            (
                "business phone",
                _set("business_phone", lambda f: "+6591234567"),
                "materials.business_phone",
                "not_allowed",
                0,
            )
        )
    return cases


@pytest.mark.parametrize("code", sorted(GUIDE))
def test_guide_materials_are_accepted_and_every_broken_rule_is_refused(api: Api, code: str) -> None:
    actor = api.approved_account()
    group = ad_group(api, actor, PLACEMENT_OF[code])
    files = Files(api, actor)
    valid = guide_creative(api, actor, group["id"], code, files)
    created = api.client.post("/api/v1/creatives", headers=actor.headers, json=valid)
    assert created.status_code == 201, created.text
    preview = api.client.get(f"/api/v1/creatives/{created.json()['id']}/preview", headers=actor.headers)
    assert preview.status_code == 200 and (valid["materials"].get("business_name") or "") in preview.text

    wrong = []
    for label, change, field, rule, limit in _cases(GUIDE[code]):
        materials = {**valid["materials"]}
        change(files, materials)
        response = api.client.post("/api/v1/creatives", headers=actor.headers, json={**valid, "materials": materials})
        found = {f["field"]: f for f in response.json().get("error", {}).get("fields", [])}
        refusal = found.get(field)
        if response.status_code != 422 or refusal is None or (refusal["rule"], refusal["limit"]) != (rule, limit):
            wrong.append((label, response.status_code, field, rule, limit, list(found.values())))
    assert not wrong, "\n".join(map(str, wrong))


def test_a_business_phone_is_stored_in_e164(api: Api) -> None:
    actor = api.approved_account()
    group = ad_group(api, actor, "sms")
    body = guide_creative(api, actor, group["id"], "sms_business")
    body["materials"]["business_phone"] = "+65 9123 4567"
    created = api.client.post("/api/v1/creatives", headers=actor.headers, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["materials"]["business_phone"] == "+6591234567"


def test_the_catalogue_cites_the_guide_for_materials_and_limits_and_owns_the_descriptions(api: Api) -> None:
    # The guide's "Upload ad material information" lists each format's materials and their limits, nothing more:
    # what a format is (its description) is adstack's own, and the API says so.
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]
    spec = next(s for name, s in schema.items() if name.startswith("FormatSpec"))
    assert "adstack's words" in spec["properties"]["description"]["description"]
    assert "materials and limits" in spec["properties"]["source"]["description"]
