"""Builders for creative tests over the public HTTP API, with real uploaded files.

`guide_materials` builds, for each format, materials exactly as the Mi Ads Usage Guide's "Upload ad material
information" asks for them, written out here from the guide rather than read from formats.py.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.media.samples import jpeg, mp4, png
from tests.support import Actor, Api, expect

# The placement each format serves, per adstack's pairing of the guide's formats with its placement list.
PLACEMENT_OF = {
    "interstitial_image": "interstitial",
    "interstitial_video": "interstitial",
    "rewarded_video": "rewarded_video",
    "large_image": "push",
    "push_standard": "push",
    "custom_background": "icon",
    "icon_small_card": "icon",
    "newsfeed_video": "newsfeed",
    "large_newsfeed_image": "newsfeed",
    "ota_app_recommendations": "icon",
    "startup_guide_app_download": "icon",
    "ota_mandatory_pre_install": "icon",
    "image_640x100": "banner",
    "sms_image": "sms",
    "sms_business": "sms",
    "rich_media_business": "sms",
    "wallpaper_carousel": "wallpaper_carousel",
}


def campaign(api: Api, actor: Actor) -> dict[str, Any]:
    body = {
        "objective": "performance",
        "name": "Summer installs",
        "promotion_type": "app_download",
        "package_name": "com.example.game",
    }
    return expect(api.client.post("/api/v1/campaigns", headers=actor.headers, json=body), 201)


def ad_group(
    api: Api, actor: Actor, placement_type: str = "interstitial", campaign_id: int | None = None
) -> dict[str, Any]:
    campaign_id = campaign_id or campaign(api, actor)["id"]
    body = {
        "campaign_id": campaign_id,
        "name": f"{placement_type} group",
        "placement_type": placement_type,
        "bid_type": "cpc",
        "bid_micros": 200_000,
        "start_at": "2024-01-01T00:00:00Z",
    }
    return expect(api.client.post("/api/v1/ad-groups", headers=actor.headers, json=body), 201)


def upload(api: Api, actor: Actor, content: bytes, filename: str = "file.png") -> int:
    response = api.client.post("/api/v1/media", headers=actor.headers, files={"file": (filename, content)})
    return int(expect(response, 201)["id"])


def padded_png(width: int, height: int, kb: int) -> bytes:
    """A real PNG of the given pixels that weighs at least `kb` KB: a text chunk carries the extra bytes."""
    info = PngInfo()
    info.add_text("Comment", "x" * (kb * 1024))
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 160, 90)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def gif(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 40, 160)).save(buffer, format="GIF")
    return buffer.getvalue()


def padded_mp4(seconds: float, mb: int) -> bytes:
    """A real MP4 that weighs over `mb` MB: a top-level 'free' box, which players skip, carries the extra bytes."""
    video = mp4(seconds)
    extra = mb * 1024 * 1024 + 1024
    return video + struct.pack(">I4s", extra + 8, b"free") + bytes(extra)


class Files:
    """Uploads of one account, each kind of file uploaded once."""

    def __init__(self, api: Api, actor: Actor):
        self.api, self.actor = api, actor
        self._ids: dict[tuple[Any, ...], int] = {}

    def _get(self, key: tuple[Any, ...], make: Any, filename: str) -> int:
        if key not in self._ids:
            self._ids[key] = upload(self.api, self.actor, make(), filename)
        return self._ids[key]

    def png(self, width: int, height: int, copy: int = 0) -> int:
        # `copy` makes another file of the same size (different pixels), for "up to N" images.
        def make() -> bytes:
            buffer = io.BytesIO()
            Image.new("RGB", (width, height), (copy % 256, 90, 20)).save(buffer, format="PNG")
            return buffer.getvalue()

        return self._get(("png", width, height, copy), make, f"image{copy}.png")

    def jpeg(self, width: int, height: int) -> int:
        return self._get(("jpeg", width, height), lambda: jpeg(width, height), "image.jpg")

    def heavy_png(self, width: int, height: int, kb: int) -> int:
        return self._get(("heavy", width, height, kb), lambda: padded_png(width, height, kb), "heavy.png")

    def gif(self, width: int, height: int) -> int:
        return self._get(("gif", width, height), lambda: gif(width, height), "image.gif")

    def video(self, seconds: float = 2, copy: int = 0) -> int:
        return self._get(("mp4", seconds, copy), lambda: mp4(seconds, fps=1 + copy), f"clip{copy}.mp4")

    def heavy_video(self, mb: int) -> int:
        return self._get(("heavy-mp4", mb), lambda: padded_mp4(2, mb), "heavy.mp4")


def _card_texts(description_chars: int) -> dict[str, Any]:
    return {"titles": ["Build your moon base"], "descriptions": ["d" * description_chars]}


def guide_materials(files: Files, code: str) -> dict[str, Any]:
    """Materials for `code` exactly as the guide asks: the largest text each limit allows, the sizes it names."""
    icon84 = files.png(84, 84)
    video_format = {
        "videos": [files.video()],
        "cover_image": files.jpeg(720, 1280),
        "icon": icon84,
        "titles": ["t" * 30],
        "descriptions": ["d" * 80, "Free to play"],
        "button_texts": ["b" * 15, "Install"],
    }
    icon_card = {"icon": icon84, **_card_texts(80)}
    message = {
        "business_phone": "+6591234567",
        "business_name": "n" * 9,
        "descriptions": ["Deals at https://shop.example.com/sale"],
    }
    materials: dict[str, dict[str, Any]] = {
        "interstitial_image": {
            "images": [files.png(1200, 628)],
            "icon": icon84,
            "titles": ["t" * 30],
            "descriptions": ["d" * 80, "New levels every week", "Free"],
            "button_texts": ["b" * 15, "Install", "Play"],
        },
        "interstitial_video": video_format,
        "rewarded_video": video_format,
        "large_image": {
            "images": [files.png(800, 360)],
            "icon": files.png(180, 180),
            "titles": ["t" * 30],
            "descriptions": ["d" * 40],
            "top_button": True,
        },
        "push_standard": {"icon": files.png(180, 180), "titles": ["t" * 30], "descriptions": ["d" * 40, "Open now"]},
        "custom_background": {"icon": files.png(180, 120), **_card_texts(40), "background_color": "#1A73E8"},
        "icon_small_card": icon_card,
        "newsfeed_video": {k: v for k, v in video_format.items() if k != "cover_image"},
        "large_newsfeed_image": {
            "images": [files.png(1200, 628, copy) for copy in range(10)],
            "icon": icon84,
            "titles": ["t" * 30],
            "descriptions": ["d" * 80],
            "button_texts": ["b" * 15],
        },
        "ota_app_recommendations": icon_card,
        "startup_guide_app_download": icon_card,
        "ota_mandatory_pre_install": icon_card,
        "image_640x100": {"images": [files.png(640, 100, copy) for copy in range(5)]},
        "sms_image": {"images": [files.png(600, 500)], "icon": files.png(180, 180), **message},
        "sms_business": {
            **message,
            "subtitles": ["s" * 30, "Open daily", "Free delivery"],
            "button_1": "o" * 28,
            "button_2": "Call us",
        },
        "rich_media_business": {"icon": files.jpeg(800, 450), **message, "button_1": "Shop now"},
        "wallpaper_carousel": {
            "images": [files.jpeg(720, 1600)],
            "icon": icon84,
            "titles": ["t" * 30],
            "descriptions": ["d" * 80],
            "button_texts": ["b" * 15],
        },
    }
    return dict(materials[code])


def guide_creative(
    api: Api, actor: Actor, ad_group_id: int, code: str, files: Files | None = None, **overrides: Any
) -> dict[str, Any]:
    """A create body for a guide-valid creative of `code` in the ad group (which must serve the format)."""
    files = files or Files(api, actor)
    body: dict[str, Any] = {
        "ad_group_id": ad_group_id,
        "name": f"{code} creative",
        "format": code,
        "materials": guide_materials(files, code),
        "click_url": "https://example.com/landing",
    }
    body.update(overrides)
    return body


def interstitial_body(api: Api, actor: Actor, ad_group_id: int, **overrides: Any) -> dict[str, Any]:
    """A valid interstitial image creative: a 1200x628 PNG and an 84x84 icon, uploaded for real."""
    body: dict[str, Any] = {
        "ad_group_id": ad_group_id,
        "name": "Summer sale",
        "format": "interstitial_image",
        "materials": {
            "titles": ["Play the summer event"],
            "descriptions": ["New levels every week", "Win daily rewards"],
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
