"""Dynamic creative: the combinations of title, description, image or video and button that serving assembles.

Pure. Each combination has a key derived from its content, not from list positions, so reordering or adding
materials keeps the statistics serving has gathered for the combinations that still exist.
"""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class AssetCombination:
    key: str
    title: str | None
    description: str | None
    image_id: int | None
    video_id: int | None
    button_text: str | None
    icon_id: int | None
    business_name: str | None


class HasMaterials(Protocol):
    @property
    def materials(self) -> Any: ...


def _normal(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def _unique_texts(values: Sequence[str] | None) -> list[str | None]:
    seen: dict[str, None] = {}
    for value in values or ():
        text = _normal(value)
        if text:
            seen.setdefault(text, None)
    return list(seen) or [None]


def combination_key(title: str | None, description: str | None, image_id: int | None, video_id: int | None,
                    button_text: str | None) -> str:
    parts = (f"t={title or ''}", f"d={description or ''}", f"i={image_id or ''}", f"v={video_id or ''}",
             f"b={button_text or ''}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def asset_combinations(creative: HasMaterials | Mapping[str, Any]) -> list[AssetCombination]:
    """Every title x description x (image or video) x button combination, in the order the materials list them.

    A material the format does not use counts once as absent, so an icon card yields titles x descriptions x
    buttons and a video format yields one combination per video.
    """
    raw = creative if isinstance(creative, Mapping) else creative.materials
    materials: Mapping[str, Any] = raw if isinstance(raw, Mapping) else raw.model_dump()
    visuals: list[tuple[int | None, int | None]] = [
        *((int(i), None) for i in dict.fromkeys(materials.get("images") or ())),
        *((None, int(v)) for v in dict.fromkeys(materials.get("videos") or ())),
    ] or [(None, None)]
    icon = materials.get("icon")
    business = materials.get("business_name") or materials.get("brand_name")
    combinations = []
    for title, description, (image_id, video_id), button in itertools.product(
        _unique_texts(materials.get("titles")), _unique_texts(materials.get("descriptions")), visuals,
        _unique_texts(materials.get("button_texts")),
    ):
        combinations.append(AssetCombination(
            key=combination_key(title, description, image_id, video_id, button), title=title,
            description=description, image_id=image_id, video_id=video_id, button_text=button,
            icon_id=int(icon) if icon is not None else None, business_name=_normal(business) if business else None,
        ))
    return combinations
