"""Render a creative as HTML for its format. Jinja2 with autoescaping: every material is text, never markup."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from adstack.core.errors import FieldError
from adstack.core.vocabulary import PlacementType
from adstack.creatives.combinations import asset_combinations
from adstack.creatives.formats import FormatSpec

# How many combinations a preview shows side by side.
MAX_VARIANTS = 6
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")


class PreviewMedia(Protocol):
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("adstack.creatives", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def layout_family(spec: FormatSpec) -> str:
    """Formats share a handful of layouts: notification, message card, video, image, or icon card."""
    if PlacementType.PUSH in spec.placement_types:
        return "notification"
    if PlacementType.SMS in spec.placement_types:
        return "message"
    if spec.videos is not None and spec.images is None:
        return "video"
    if spec.images is not None:
        return "image"
    return "card"


def render_preview(
    spec: FormatSpec,
    materials: Mapping[str, Any],
    *,
    media: Mapping[int, PreviewMedia],
    media_url: Mapping[int, str],
    click_url: str | None,
    problems: Sequence[FieldError] = (),
) -> str:
    """The creative's combinations laid out as its format shows them. `media` holds the account's uploads that
    the materials name, `media_url` where each is served; ids missing from them render as placeholders."""

    def medium(asset_id: int | None) -> dict[str, Any] | None:
        asset = media.get(asset_id) if asset_id is not None else None
        if asset is None or asset_id is None:
            return None
        return {"url": media_url[asset_id], "width": asset.width, "height": asset.height}

    combinations = asset_combinations(materials)
    cover = materials.get("cover_image")
    variants = [
        {
            "key": c.key, "title": c.title, "description": c.description, "button_text": c.button_text,
            "business_name": c.business_name, "image": medium(c.image_id), "video": medium(c.video_id),
            "icon": medium(c.icon_id), "cover": medium(int(cover)) if cover is not None else None,
        }
        for c in combinations[:MAX_VARIANTS]
    ]
    color = materials.get("background_color") or ""
    card = {
        "subtitles": [t for t in materials.get("subtitles") or () if t and t.strip()],
        "buttons": [t for t in (materials.get("button_1"), materials.get("button_2")) if t and t.strip()],
        "business_phone": materials.get("business_phone") or "",
        # Only a checked #RRGGBB reaches the style attribute.
        "background_color": color if _COLOR.fullmatch(color) else "",
        "top_button": bool(materials.get("top_button")),
    }
    family = layout_family(spec)
    template = _environment().get_template(f"preview/{family}.html")
    return template.render(
        spec=spec, family=family, variants=variants, total_combinations=len(combinations),
        click_url=click_url or "#", problems=list(problems), card=card,
        button_texts=[t for t in materials.get("button_texts") or () if t and t.strip()],
    )
