"""Creative format specs as data, and the pure validator of materials.

One spec per format, one table below. Every rule a format has is a field of its spec, so the console can show
the rules and the validator can check them without a database.

The formats are modelled on Mi Ads'. Where a public Mi Ads page states a rule, a `# Source:` comment names the
page and section, and the value matches it. Every other value is adstack's own choice and is marked
`# Unsourced`: keep it until a public page states otherwise.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from adstack.core.errors import FieldError
from adstack.core.vocabulary import PlacementType

# The guide names JPEG three ways; uploads are identified as one of these from their bytes.
_FORMAT_ALIASES = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "mp4": "mp4"}


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True)

    min_count: int = Field(default=1, description="0 when the material is optional.")
    max_count: int = 1


class TextRule(_Rule):
    max_chars: int
    emoji_allowed: bool = True


class Size(BaseModel):
    model_config = ConfigDict(frozen=True)

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class ImageRule(_Rule):
    formats: tuple[str, ...] = ("jpg", "png", "jpeg")
    sizes: tuple[Size, ...] = Field(default=(), description="Exact pixel sizes accepted; empty when a ratio rules.")
    ratios: tuple[Size, ...] = Field(default=(), description="Accepted aspect ratios, when no exact size is set.")
    min_width: int = 0
    min_height: int = 0
    max_kb: int


class VideoRule(_Rule):
    formats: tuple[str, ...] = ("mp4",)
    min_duration_s: int = 0
    max_duration_s: int = 30
    max_kb: int = 10 * 1024
    ratios: tuple[Size, ...] = ()
    min_width: int = 0
    min_height: int = 0


class FormatSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    description: str
    placement_types: tuple[PlacementType, ...]
    images: ImageRule | None = None
    videos: VideoRule | None = None
    icon: ImageRule | None = None
    titles: TextRule | None = None
    descriptions: TextRule | None = None
    button_texts: TextRule | None = None
    brand_name: TextRule | None = None
    requires_image_or_video: bool = Field(
        default=False, description="Images and videos are each optional, but at least one of them is needed.")


def _sizes(*pairs: tuple[int, int]) -> tuple[Size, ...]:
    return tuple(Size(width=w, height=h) for w, h in pairs)


# Unsourced: the materials most formats share.
ICON = ImageRule(sizes=_sizes((84, 84)), max_kb=100)
TITLES = TextRule(max_chars=30, min_count=1, max_count=3)
DESCRIPTIONS = TextRule(max_chars=80, min_count=1, max_count=3)
BUTTONS = TextRule(max_chars=15, min_count=1, max_count=3)
BRAND = TextRule(max_chars=20)
VIDEO = VideoRule(min_count=1, max_count=5)  # MP4, 0-30 s, at most 10 MB
LANDSCAPE_OR_PORTRAIT = _sizes((16, 9), (9, 16))

# Source: https://global.e.mi.com/doc/resources/special_style.html (Miads Ads Format, 2023.02), I "Introduction of
# Push", 2.1 Standard template and 2.2 Big picture template: "Title:30 characters", "Content:40 characters",
# "ICON: format:jpeg,png,jpg, size:180*180, At most 30kb". Unsourced: how many titles and texts a creative holds.
PUSH_ICON = ImageRule(sizes=_sizes((180, 180)), max_kb=30)
PUSH_TITLES = TextRule(max_chars=30, min_count=1, max_count=3)
PUSH_CONTENTS = TextRule(max_chars=40, min_count=1, max_count=3)


def _optional(rule: TextRule) -> TextRule:
    return rule.model_copy(update={"min_count": 0})


P = PlacementType

FORMAT_SPECS: tuple[FormatSpec, ...] = (
    # Unsourced.
    FormatSpec(
        code="interstitial_image", name="Interstitial image", placement_types=(P.INTERSTITIAL,),
        description="A full-screen image shown at a natural pause in an app.",
        images=ImageRule(sizes=_sizes((1200, 628)), max_kb=500, max_count=5),
        icon=ICON, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=BUTTONS,
    ),
    # Unsourced.
    FormatSpec(
        code="interstitial_video", name="Interstitial video", placement_types=(P.INTERSTITIAL,),
        description="A full-screen video, landscape 16:9 or portrait 9:16, shown at a natural pause.",
        videos=VIDEO.model_copy(update={"ratios": LANDSCAPE_OR_PORTRAIT, "min_width": 720, "min_height": 720}),
        icon=ICON, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=BUTTONS,
    ),
    # Unsourced.
    FormatSpec(
        code="rewarded_video", name="Rewarded video", placement_types=(P.REWARDED_VIDEO,),
        description="A video the user watches to the end for an in-app reward, then an end card.",
        videos=VIDEO.model_copy(update={"ratios": LANDSCAPE_OR_PORTRAIT, "min_width": 720, "min_height": 720}),
        icon=ICON, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=BUTTONS,
    ),
    # Unsourced.
    FormatSpec(
        code="large_image", name="Large image", placement_types=(P.BANNER, P.NEWSFEED),
        description="A large 1200x628 image with title and description.",
        images=ImageRule(sizes=_sizes((1200, 628)), max_kb=500, max_count=5),
        icon=ICON.model_copy(update={"min_count": 0}), titles=TITLES, descriptions=DESCRIPTIONS,
        button_texts=_optional(BUTTONS),
    ),
    # Unsourced.
    FormatSpec(
        code="custom_background", name="Custom background", placement_types=(P.ICON,),
        description="An app card drawn over the advertiser's own background image.",
        images=ImageRule(sizes=_sizes((1080, 540)), max_kb=300),
        icon=ICON, titles=TITLES, descriptions=_optional(DESCRIPTIONS), button_texts=BUTTONS,
    ),
    # Unsourced.
    FormatSpec(
        code="icon_small_card", name="Icon small card", placement_types=(P.ICON,),
        description="A small card: the app icon, a title, a description and a button.",
        icon=ICON, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=BUTTONS,
    ),
    # Unsourced.
    FormatSpec(
        code="newsfeed_video", name="Newsfeed video", placement_types=(P.NEWSFEED,),
        description="A 16:9 video in a content feed.",
        videos=VIDEO.model_copy(update={"ratios": _sizes((16, 9)), "min_width": 1280, "min_height": 720}),
        icon=ICON, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=BUTTONS,
    ),
    # Unsourced.
    FormatSpec(
        code="large_newsfeed_image", name="Large newsfeed image", placement_types=(P.NEWSFEED,),
        description="A large 16:9 image in a content feed.",
        images=ImageRule(sizes=_sizes((1080, 607)), max_kb=500, max_count=5),
        icon=ICON, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=_optional(BUTTONS),
    ),
    # Unsourced.
    FormatSpec(
        code="ota_app_recommendations", name="OTA app recommendations", placement_types=(P.ICON,),
        description="Apps recommended on the screen shown after a system (OTA) update.",
        icon=ICON, titles=TextRule(max_chars=30), descriptions=TextRule(max_chars=80),
    ),
    # Unsourced.
    FormatSpec(
        code="startup_guide_app_download", name="Startup guide app download", placement_types=(P.ICON,),
        description="Apps offered for download in the device's first-start setup guide.",
        icon=ICON, titles=TextRule(max_chars=30), descriptions=TextRule(max_chars=80),
    ),
    # Unsourced.
    FormatSpec(
        code="ota_mandatory_pre_install", name="OTA mandatory pre-install", placement_types=(P.ICON,),
        description="An app installed with a system (OTA) update; shown by its icon and name.",
        icon=ICON, titles=TextRule(max_chars=30),
    ),
    # Unsourced.
    FormatSpec(
        code="image_640x100", name="640x100 image", placement_types=(P.BANNER,),
        description="A 640x100 banner image.",
        images=ImageRule(formats=("jpg", "png", "jpeg", "gif"), sizes=_sizes((640, 100)), max_kb=150,
                         max_count=5),
        titles=_optional(TITLES),
    ),
    # Unsourced.
    FormatSpec(
        code="image_600x500", name="600x500 image", placement_types=(P.INTERSTITIAL, P.BANNER),
        description="A 600x500 image, shown as a half-screen interstitial or a large banner.",
        images=ImageRule(formats=("jpg", "png", "jpeg", "gif"), sizes=_sizes((600, 500)), max_kb=300,
                         max_count=5),
        titles=_optional(TITLES),
    ),
    # Unsourced.
    FormatSpec(
        code="sms_business", name="SMS business format", placement_types=(P.SMS,),
        description="A business message card in the SMS app: brand, title, text, optional image, buttons.",
        images=ImageRule(sizes=_sizes((1020, 420)), max_kb=300, min_count=0),
        icon=ICON, brand_name=BRAND, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=BUTTONS,
    ),
    # Unsourced.
    FormatSpec(
        code="rich_media_business", name="Rich-media business format", placement_types=(P.SMS,),
        description="A rich business message card with images or a video.",
        images=ImageRule(sizes=_sizes((1080, 1080), (1080, 608)), max_kb=500, min_count=0, max_count=5),
        videos=VIDEO.model_copy(update={"min_count": 0, "max_count": 1}),
        icon=ICON, brand_name=BRAND, titles=TITLES, descriptions=DESCRIPTIONS, button_texts=BUTTONS,
        requires_image_or_video=True,
    ),
    # Unsourced.
    FormatSpec(
        code="wallpaper_carousel", name="Wallpaper carousel", placement_types=(P.WALLPAPER_CAROUSEL,),
        description="Full-screen portrait wallpapers on the lock screen, with a caption and a link.",
        images=ImageRule(sizes=_sizes((1080, 1920), (1080, 2340), (1080, 2400)), max_kb=1024, max_count=5),
        titles=TITLES, descriptions=_optional(DESCRIPTIONS), button_texts=_optional(BUTTONS),
    ),
    # Source: special_style.html (above), 2.1 Standard template: title, content and icon as PUSH_*, and "Emoji:X".
    FormatSpec(
        code="push_standard", name="Push standard template", placement_types=(P.PUSH,),
        description="A notification with an icon, a title and a line of text, without emoji.",
        icon=PUSH_ICON, titles=PUSH_TITLES.model_copy(update={"emoji_allowed": False}),
        descriptions=PUSH_CONTENTS.model_copy(update={"emoji_allowed": False}),
    ),
    # Source: special_style.html (above), 2.2 Big picture template: title, content and icon as PUSH_*, and "Image:
    # format:jpeg,png,jpg, size:800*360, At most 1024kb". Unsourced: up to 5 images; emoji (not stated here).
    FormatSpec(
        code="push_big_picture", name="Push big picture template", placement_types=(P.PUSH,),
        description="A notification with an icon, a title, a line of text and an 800x360 picture.",
        images=ImageRule(sizes=_sizes((800, 360)), max_kb=1024, max_count=5),
        icon=PUSH_ICON, titles=PUSH_TITLES, descriptions=PUSH_CONTENTS,
    ),
)

SPECS_BY_CODE: dict[str, FormatSpec] = {spec.code: spec for spec in FORMAT_SPECS}
FORMAT_CODES: tuple[str, ...] = tuple(SPECS_BY_CODE)


def get_spec(code: str) -> FormatSpec | None:
    return SPECS_BY_CODE.get(code)


def formats_for_placement(placement_type: str) -> list[FormatSpec]:
    return [spec for spec in FORMAT_SPECS if placement_type in spec.placement_types]


# ---------- the validator ----------


class MediaFacts(Protocol):
    """What the validator needs to know about an uploaded file (media.models.MediaAsset fits)."""

    @property
    def kind(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def duration_ms(self) -> int | None: ...


class MaterialsLike(Protocol):
    @property
    def titles(self) -> Sequence[str]: ...
    @property
    def descriptions(self) -> Sequence[str]: ...
    @property
    def button_texts(self) -> Sequence[str]: ...
    @property
    def images(self) -> Sequence[int]: ...
    @property
    def videos(self) -> Sequence[int]: ...
    @property
    def icon(self) -> int | None: ...
    @property
    def brand_name(self) -> str | None: ...


def text_length(value: str) -> int:
    """Characters as a reader counts them: composed (NFC), so an accent is not a second character."""
    return len(unicodedata.normalize("NFC", value.strip()))


# Where Unicode keeps pictographs (emoticons, symbols, dingbats, flags), plus the selector that asks for emoji
# presentation (U+FE0F) and the keycap mark (U+20E3), so "❤️" and "1️⃣" count too.
_EMOJI_RANGES = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0xFE0F, 0xFE0F), (0x20E3, 0x20E3))


def emoji_in(value: str) -> str:
    """The emoji characters of a text, in order; empty when there are none."""
    return "".join(c for c in value if any(low <= ord(c) <= high for low, high in _EMOJI_RANGES))


def _size_kb(size_bytes: int) -> int:
    return -(-size_bytes // 1024)


def _accepted(formats: Sequence[str]) -> list[str]:
    return sorted({_FORMAT_ALIASES.get(f, f) for f in formats})


def _error(field: str, rule: str, message: str, limit: Any = None, actual: Any = None) -> FieldError:
    return FieldError(field=field, rule=rule, message=message, limit=limit, actual=actual)


def _check_count(field: str, count: int, rule: _Rule | None, label: str) -> list[FieldError]:
    if rule is None:
        if count:
            return [_error(field, "not_allowed", f"this format takes no {label}", limit=0, actual=count)]
        return []
    if count == 0 and rule.min_count > 0:
        return [_error(field, "required", f"at least {rule.min_count} {label} required", limit=rule.min_count,
                       actual=0)]
    if count < rule.min_count:
        return [_error(field, "min_count", f"at least {rule.min_count} {label} required", limit=rule.min_count,
                       actual=count)]
    if count > rule.max_count:
        return [_error(field, "max_count", f"at most {rule.max_count} {label}", limit=rule.max_count, actual=count)]
    return []


def _check_texts(field: str, values: Sequence[str], rule: TextRule) -> list[FieldError]:
    errors = []
    seen: set[str] = set()
    for index, value in enumerate(values):
        name = f"{field}.{index}"
        length = text_length(value)
        if length == 0:
            errors.append(_error(name, "required", "must not be blank", actual=0))
        elif length > rule.max_chars:
            errors.append(_error(name, "max_length", f"at most {rule.max_chars} characters", limit=rule.max_chars,
                                 actual=length))
        if not rule.emoji_allowed and (found := emoji_in(value)):
            errors.append(_error(name, "no_emoji", "this format does not take emoji", actual=found[:20]))
        key = unicodedata.normalize("NFC", value.strip()).casefold()
        if length and key in seen:
            errors.append(_error(name, "duplicate", "the same text is given twice", actual=value[:200]))
        seen.add(key)
    return errors


def _ratio_matches(width: int, height: int, ratio: Size) -> bool:
    # Within 1 %: encoders round sizes to even numbers (1080x607 is a 16:9 frame).
    return abs(width * ratio.height - height * ratio.width) <= 0.01 * height * ratio.width


def _check_dimensions(field: str, asset: MediaFacts, sizes: Sequence[Size], ratios: Sequence[Size],
                      min_width: int, min_height: int, noun: str) -> list[FieldError]:
    actual = f"{asset.width}x{asset.height}"
    if sizes and not any(asset.width == s.width and asset.height == s.height for s in sizes):
        return [_error(field, f"{noun}_size", f"the {noun} must be {' or '.join(str(s) for s in sizes)} pixels",
                       limit=[str(s) for s in sizes], actual=actual)]
    if ratios and not any(_ratio_matches(asset.width, asset.height, r) for r in ratios):
        wanted = [f"{r.width}:{r.height}" for r in ratios]
        return [_error(field, "aspect_ratio", f"the {noun} must have an aspect ratio of {' or '.join(wanted)}",
                       limit=wanted, actual=actual)]
    short_side, long_side = sorted((asset.width, asset.height))
    if short_side < min(min_width, min_height) or long_side < max(min_width, min_height):
        limit = f"{min_width}x{min_height}"
        return [_error(field, "min_dimensions", f"the {noun} must be at least {limit} pixels", limit=limit,
                       actual=actual)]
    return []


def _check_media(field: str, ids: Sequence[int], rule: ImageRule | VideoRule, kind: str,
                 assets: Mapping[int, MediaFacts]) -> list[FieldError]:
    errors = []
    accepted = _accepted(rule.formats)
    for index, asset_id in enumerate(ids):
        name = f"{field}.{index}"
        asset = assets.get(asset_id)
        if asset is None:
            errors.append(_error(name, "not_found", f"media {asset_id} is not an upload of this account",
                                 actual=asset_id))
            continue
        if asset.kind != kind or asset.format not in accepted:
            errors.append(_error(name, "file_format", f"must be a {' or '.join(accepted)} {kind}", limit=accepted,
                                 actual=asset.format))
            continue
        if isinstance(rule, VideoRule):
            errors.extend(_check_dimensions(name, asset, (), rule.ratios, rule.min_width, rule.min_height, "video"))
            duration_s = (asset.duration_ms or 0) / 1000
            if duration_s > rule.max_duration_s:
                errors.append(_error(name, "max_duration_s", f"at most {rule.max_duration_s} seconds",
                                     limit=rule.max_duration_s, actual=round(duration_s, 3)))
            elif duration_s < rule.min_duration_s:
                errors.append(_error(name, "min_duration_s", f"at least {rule.min_duration_s} seconds",
                                     limit=rule.min_duration_s, actual=round(duration_s, 3)))
        else:
            errors.extend(_check_dimensions(name, asset, rule.sizes, rule.ratios, rule.min_width, rule.min_height,
                                            "image"))
        if _size_kb(asset.size_bytes) > rule.max_kb:
            errors.append(_error(name, "max_size_kb", f"at most {rule.max_kb} KB", limit=rule.max_kb,
                                 actual=_size_kb(asset.size_bytes)))
    if len(set(ids)) != len(ids):
        errors.append(_error(field, "duplicate", "the same media is given twice", actual=list(ids)))
    return errors


def validate_materials(spec: FormatSpec, materials: MaterialsLike,
                       assets: Mapping[int, MediaFacts]) -> list[FieldError]:
    """Every way the materials break the format's rules, named as `materials.<field>[.<index>]`.

    `assets` holds the uploads the materials may use (those of the creative's account); any other id is
    reported as not found, so nobody learns whether another account's upload exists.
    """
    errors: list[FieldError] = []
    texts: tuple[tuple[str, Sequence[str], TextRule | None, str], ...] = (
        ("titles", materials.titles, spec.titles, "titles"),
        ("descriptions", materials.descriptions, spec.descriptions, "descriptions"),
        ("button_texts", materials.button_texts, spec.button_texts, "button texts"),
    )
    for name, values, text_rule, label in texts:
        field = f"materials.{name}"
        errors.extend(_check_count(field, len(values), text_rule, label))
        if text_rule is not None:
            errors.extend(_check_texts(field, values, text_rule))

    brand = [materials.brand_name] if materials.brand_name is not None else []
    errors.extend(_check_count("materials.brand_name", len(brand), spec.brand_name, "brand name"))
    if spec.brand_name is not None and brand:
        errors.extend(replace(e, field="materials.brand_name")
                      for e in _check_texts("materials.brand_name", brand, spec.brand_name))

    media: tuple[tuple[str, Sequence[int], ImageRule | VideoRule | None, str, str], ...] = (
        ("images", materials.images, spec.images, "image", "images"),
        ("videos", materials.videos, spec.videos, "video", "videos"),
    )
    for name, ids, media_rule, kind, label in media:
        field = f"materials.{name}"
        errors.extend(_check_count(field, len(ids), media_rule, label))
        if media_rule is not None:
            errors.extend(_check_media(field, ids, media_rule, kind, assets))
    if spec.requires_image_or_video and not materials.images and not materials.videos:
        errors.append(_error("materials.images", "required", "at least one image or video is required", limit=1,
                             actual=0))

    icon = [materials.icon] if materials.icon is not None else []
    errors.extend(_check_count("materials.icon", len(icon), spec.icon, "icon"))
    if spec.icon is not None and icon:
        errors.extend(replace(e, field="materials.icon")
                      for e in _check_media("materials.icon", icon, spec.icon, "image", assets))
    return errors
