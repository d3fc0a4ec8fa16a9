"""The pure validator: every way a creative's materials break its format's rules (formats.py).

Each refusal names the field (`materials.<field>[.<index>]`), the rule and the limit. Besides the guide's rules
only these are checked, for safety: a media id must be an upload of the creative's account, of the kind the slot
takes; a required text must not be blank; no text may hold control characters (XML, so VAST, cannot carry them);
a background colour must be #RRGGBB (it is written into the preview's style); a phone number must be one that can
be dialled (E.164, libphonenumber's metadata).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import phonenumbers

from adstack.core.errors import FieldError
from adstack.creatives.formats import (
    MEDIA_LISTS,
    SINGLE_MEDIA,
    SINGLE_TEXTS,
    TEXT_LISTS,
    FormatSpec,
    ImageRule,
    TextRule,
    VideoRule,
    _Rule,
)

# The guide names JPEG three ways; uploads are identified as one of these from their bytes.
_FORMAT_ALIASES = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "mp4": "mp4"}
_URL = re.compile(r"https?://[^\s/?#]+\.[^\s/?#]+\S*", re.IGNORECASE)
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
_LABELS = {
    "images": "images", "videos": "videos", "cover_image": "cover image", "icon": "icon", "titles": "titles",
    "subtitles": "subtitles", "descriptions": "descriptions", "button_texts": "button texts",
    "button_1": "button text 1", "button_2": "button text 2", "business_name": "business name",
    "business_phone": "business phone number", "background_color": "background colour",
    "top_button": "top button",
}


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


def text_length(value: str) -> int:
    """Characters as a reader counts them: composed (NFC), so an accent is not a second character."""
    return len(unicodedata.normalize("NFC", value.strip()))


# Where Unicode keeps pictographs (emoticons, symbols, dingbats, flags), plus the selector that asks for emoji
# presentation (U+FE0F) and the keycap mark (U+20E3), so "❤️" and "1️⃣" count too.
_EMOJI_RANGES = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0xFE0F, 0xFE0F), (0x20E3, 0x20E3))


def control_characters_in(value: str) -> str:
    """The control characters of a text (tab and line breaks too: every text here is one line), lone surrogates
    and U+FFFE/U+FFFF, in order; empty when there are none. XML cannot carry most of them (Source: XML 1.0, 2.2
    Characters), so a VAST title holding one would break the document."""
    return "".join(c for c in value if unicodedata.category(c) in ("Cc", "Cs") or c in "\ufffe\uffff")


def emoji_in(value: str) -> str:
    """The emoji characters of a text, in order; empty when there are none."""
    return "".join(c for c in value if any(low <= ord(c) <= high for low, high in _EMOJI_RANGES))


def e164(value: str) -> str | None:
    """The number in E.164 form when it is a valid number written with its country code, else None."""
    try:
        number = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _error(field: str, rule: str, message: str, limit: Any = None, actual: Any = None) -> FieldError:
    return FieldError(field=field, rule=rule, message=message, limit=limit, actual=actual)


def _size_kb(size_bytes: int) -> int:
    return -(-size_bytes // 1024)


def _accepted(formats: Sequence[str]) -> list[str]:
    return sorted({_FORMAT_ALIASES.get(f, f) for f in formats})


def _check_count(field: str, count: int, rule: _Rule | None, label: str) -> list[FieldError]:
    if rule is None:
        if count:
            return [_error(field, "not_allowed", f"this format takes no {label}", limit=0, actual=count)]
        return []
    if count < rule.min_count:
        name = "required" if count == 0 else "min_count"
        return [_error(field, name, f"at least {rule.min_count} {label} required", limit=rule.min_count,
                       actual=count)]
    if count > rule.max_count:
        return [_error(field, "max_count", f"at most {rule.max_count} {label}", limit=rule.max_count, actual=count)]
    return []


def _check_text(name: str, value: str, rule: TextRule) -> list[FieldError]:
    errors = []
    length = text_length(value)
    if length == 0:
        return [_error(name, "required", "must not be blank", limit=1, actual=0)]
    if length > rule.max_chars:
        errors.append(_error(name, "max_length", f"at most {rule.max_chars} characters", limit=rule.max_chars,
                             actual=length))
    if rule.url_required and not _URL.search(value):
        errors.append(_error(name, "url_required", "must contain a URL (http:// or https://)",
                             limit="http(s) URL", actual=value[:200]))
    if found_controls := control_characters_in(value):
        errors.append(_error(name, "no_control_characters", "must not contain control characters", limit=0,
                             actual=" ".join(f"U+{ord(c):04X}" for c in found_controls[:20])))
    if not rule.emoji_allowed and (found := emoji_in(value)):
        errors.append(_error(name, "no_emoji", "this format does not take emoji", limit=0, actual=found[:20]))
    return errors


def _check_dimensions(field: str, asset: MediaFacts, rule: ImageRule) -> list[FieldError]:
    if rule.sizes and not any(asset.width == s.width and asset.height == s.height for s in rule.sizes):
        return [_error(field, "image_size", f"the image must be {' or '.join(str(s) for s in rule.sizes)} pixels",
                       limit=[str(s) for s in rule.sizes], actual=f"{asset.width}x{asset.height}")]
    return []


def _check_media(field: str, ids: Sequence[int], rule: ImageRule | VideoRule, kind: str,
                 assets: Mapping[int, MediaFacts], *, indexed: bool) -> list[FieldError]:
    errors = []
    accepted = _accepted(rule.formats)
    for index, asset_id in enumerate(ids):
        name = f"{field}.{index}" if indexed else field
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
            duration_s = (asset.duration_ms or 0) / 1000
            if duration_s > rule.max_duration_s:
                errors.append(_error(name, "max_duration_s", f"at most {rule.max_duration_s} seconds",
                                     limit=rule.max_duration_s, actual=round(duration_s, 3)))
            elif duration_s < rule.min_duration_s:
                errors.append(_error(name, "min_duration_s", f"at least {rule.min_duration_s} seconds",
                                     limit=rule.min_duration_s, actual=round(duration_s, 3)))
        else:
            errors.extend(_check_dimensions(name, asset, rule))
        if _size_kb(asset.size_bytes) > rule.max_kb:
            errors.append(_error(name, "max_size_kb", f"at most {rule.max_kb} KB", limit=rule.max_kb,
                                 actual=_size_kb(asset.size_bytes)))
    return errors


def _present(value: Any) -> list[Any]:
    if value is None or value is False:
        return []
    return [value]


def validate_materials(spec: FormatSpec, materials: Any, assets: Mapping[int, MediaFacts]) -> list[FieldError]:
    """Every way the materials (creatives.models.Materials) break the format's rules.

    `assets` holds the uploads the materials may use (those of the creative's account); any other id is
    reported as not found, so nobody learns whether another account's upload exists.
    """
    errors: list[FieldError] = []
    for name in TEXT_LISTS:
        values: Sequence[str] = getattr(materials, name)
        rule: TextRule | None = getattr(spec, name)
        errors.extend(_check_count(f"materials.{name}", len(values), rule, _LABELS[name]))
        if rule is not None:
            for index, value in enumerate(values):
                errors.extend(_check_text(f"materials.{name}.{index}", value, rule))
    for name in SINGLE_TEXTS:
        given = _present(getattr(materials, name))
        rule = getattr(spec, name)
        errors.extend(_check_count(f"materials.{name}", len(given), rule, _LABELS[name]))
        if rule is not None and given:
            errors.extend(_check_text(f"materials.{name}", given[0], rule))

    for name, kind in (("images", "image"), ("videos", "video")):
        ids: Sequence[int] = getattr(materials, name)
        media_rule: ImageRule | VideoRule | None = getattr(spec, name)
        errors.extend(_check_count(f"materials.{name}", len(ids), media_rule, _LABELS[name]))
        if media_rule is not None:
            errors.extend(_check_media(f"materials.{name}", ids, media_rule, kind, assets, indexed=True))
    for name in SINGLE_MEDIA:
        given = _present(getattr(materials, name))
        image_rule: ImageRule | None = getattr(spec, name)
        errors.extend(_check_count(f"materials.{name}", len(given), image_rule, _LABELS[name]))
        if image_rule is not None and given:
            errors.extend(_check_media(f"materials.{name}", given, image_rule, "image", assets, indexed=False))

    phone = _present(materials.business_phone)
    errors.extend(_check_count("materials.business_phone", len(phone), spec.business_phone, _LABELS["business_phone"]))
    if spec.business_phone is not None and phone and e164(phone[0]) != phone[0].strip():
        errors.append(_error("materials.business_phone", "e164",
                             "must be a valid phone number in E.164 form, with + and the country code",
                             limit="E.164, e.g. +6591234567", actual=phone[0][:40]))
    color = _present(materials.background_color)
    errors.extend(_check_count("materials.background_color", len(color), spec.background_color,
                               _LABELS["background_color"]))
    if spec.background_color is not None and color and not _COLOR.fullmatch(color[0]):
        errors.append(_error("materials.background_color", "color_format", "must be a colour as #RRGGBB",
                             limit="#RRGGBB", actual=color[0][:40]))
    errors.extend(_check_count("materials.top_button", len(_present(materials.top_button)), spec.top_button,
                               _LABELS["top_button"]))
    return errors


__all__ = ["MEDIA_LISTS", "control_characters_in", "e164", "emoji_in", "text_length", "validate_materials"]
