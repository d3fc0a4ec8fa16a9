"""Builders for creative tests over the public HTTP API, with real uploaded files."""

from __future__ import annotations

from typing import Any

from tests.media.samples import png
from tests.support import Actor, Api, expect


def campaign(api: Api, actor: Actor) -> dict[str, Any]:
    body = {"objective": "performance", "name": "Summer installs", "promotion_type": "app_download",
            "package_name": "com.example.game"}
    return expect(api.client.post("/api/v1/campaigns", headers=actor.headers, json=body), 201)


def ad_group(api: Api, actor: Actor, placement_type: str = "interstitial", campaign_id: int | None = None
             ) -> dict[str, Any]:
    campaign_id = campaign_id or campaign(api, actor)["id"]
    body = {"campaign_id": campaign_id, "name": f"{placement_type} group", "placement_type": placement_type,
            "bid_type": "cpc", "bid_micros": 200_000, "start_at": "2024-01-01T00:00:00Z"}
    return expect(api.client.post("/api/v1/ad-groups", headers=actor.headers, json=body), 201)


def upload(api: Api, actor: Actor, content: bytes, filename: str = "file.png") -> int:
    response = api.client.post("/api/v1/media", headers=actor.headers, files={"file": (filename, content)})
    return int(expect(response, 201)["id"])


def interstitial_body(api: Api, actor: Actor, ad_group_id: int, **overrides: Any) -> dict[str, Any]:
    """A valid interstitial image creative: a 1200x628 PNG and an 84x84 icon, uploaded for real."""
    body: dict[str, Any] = {
        "ad_group_id": ad_group_id,
        "name": "Summer sale",
        "format": "interstitial_image",
        "materials": {
            "titles": ["Play the summer event", "Win daily rewards"],
            "descriptions": ["New levels every week"],
            "button_texts": ["Install"],
            "images": [upload(api, actor, png(1200, 628), "main.png")],
            "icon": upload(api, actor, png(84, 84), "icon.png"),
        },
        "click_url": "https://example.com/landing?src=mi",
        "impression_urls": ["https://track.example.com/imp?c=1"],
    }
    body.update(overrides)
    return body


def create(api: Api, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    return expect(api.client.post("/api/v1/creatives", headers=actor.headers, json=body), 201)


def fields_of(error_body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in error_body["error"]["fields"]}
