"""The format table and the pure materials validator."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adstack.core.vocabulary import PlacementType
from adstack.creatives import iab_sizes
from adstack.creatives.formats import FORMAT_SPECS, GUIDE, SPECS_BY_CODE, FormatSpec, get_spec
from adstack.creatives.material_rules import validate_materials
from adstack.creatives.models import Materials

# The guide's headings in "Upload ad material information", and the codes of its four unnamed blocks.
GUIDE_HEADINGS = {
    "interstitial_image": "Interstitial image",
    "interstitial_video": "Interstitial video",
    "rewarded_video": "Rewarded video",
    "large_image": "Large image",
    "custom_background": "Custom background",
    "icon_small_card": "Icon small card",
    "newsfeed_video": "Newsfeed video",
    "large_newsfeed_image": "Large newsfeed image",
    "ota_app_recommendations": "OTA app recommendations",
    "startup_guide_app_download": "Startup guide app download",
    "ota_mandatory_pre_install": "OTA mandatory pre-install",
    "rich_media_business": "Rich media",
    "wallpaper_carousel": "Wallpaper carousel",
}
UNNAMED_BLOCKS = ("push_standard", "image_640x100", "sms_image", "sms_business")


@dataclass
class Upload:
    """The facts of an uploaded file, as media.MediaAsset carries them."""

    kind: str = "image"
    format: str = "png"
    width: int = 1200
    height: int = 628
    size_bytes: int = 200 * 1024
    duration_ms: int | None = None


@dataclass
class Library:
    assets: dict[int, Upload] = field(default_factory=dict)

    def add(self, upload: Upload) -> int:
        asset_id = len(self.assets) + 1
        self.assets[asset_id] = upload
        return asset_id


def interstitial(library: Library, **overrides: object) -> Materials:
    values: dict[str, object] = {
        "titles": ["Play now"],
        "descriptions": ["Fun"],
        "button_texts": ["Install"],
        "images": [library.add(Upload())],
        "icon": library.add(Upload(width=84, height=84, size_bytes=20_000)),
    }
    values.update(overrides)
    return Materials.model_validate(values)


def errors_of(spec: FormatSpec, materials: Materials, library: Library) -> dict[str, tuple[str, object, object]]:
    return {e.field: (e.rule, e.limit, e.actual) for e in validate_materials(spec, materials, library.assets)}


def spec(code: str) -> FormatSpec:
    found = get_spec(code)
    assert found is not None
    return found


def test_every_guide_format_is_in_the_table_with_its_source() -> None:
    # Beside the guide's formats, only the IAB display sizes exchanges buy (creatives/iab_sizes.py).
    iab = {s.format_code for s in iab_sizes.iab_sizes()}
    assert all(SPECS_BY_CODE[code].source == iab_sizes.SOURCE for code in iab)
    assert set(SPECS_BY_CODE) - iab == set(GUIDE_HEADINGS) | set(UNNAMED_BLOCKS)
    for code, heading in GUIDE_HEADINGS.items():
        assert SPECS_BY_CODE[code].source == f"{GUIDE}, {heading}"
    for code in UNNAMED_BLOCKS:
        assert SPECS_BY_CODE[code].source.startswith(GUIDE) and "no heading" in SPECS_BY_CODE[code].source
    served = {p for s in FORMAT_SPECS for p in s.placement_types}
    assert served == set(PlacementType), "every placement type needs at least one format"


def test_valid_materials_pass() -> None:
    library = Library()
    assert validate_materials(spec("interstitial_image"), interstitial(library), library.assets) == []


def test_text_rules_name_the_field_rule_limit_and_actual() -> None:
    library = Library()
    materials = interstitial(
        library, titles=["x" * 31, "Second"], descriptions=["d"] * 4, button_texts=["b" * 16, "  "]
    )
    errors = errors_of(spec("interstitial_image"), materials, library)
    assert errors["materials.titles"] == ("max_count", 1, 2)
    assert errors["materials.titles.0"] == ("max_length", 30, 31)
    assert errors["materials.descriptions"] == ("max_count", 3, 4)
    assert errors["materials.button_texts.0"] == ("max_length", 15, 16)
    assert errors["materials.button_texts.1"][0] == "required"
    assert errors_of(spec("interstitial_image"), interstitial(library, descriptions=[]), library)[
        "materials.descriptions"
    ] == ("required", 1, 0)


def test_image_rules() -> None:
    library = Library()
    wrong_size = library.add(Upload(width=1000, height=500))
    too_heavy = library.add(Upload(size_bytes=501 * 1024))
    gif = library.add(Upload(format="gif"))
    video = library.add(Upload(kind="video", format="mp4", duration_ms=5000))
    materials = interstitial(library, images=[wrong_size, too_heavy, gif, video, 999])
    errors = errors_of(spec("interstitial_image"), materials, library)
    assert errors["materials.images.0"] == ("image_size", ["1200x628"], "1000x500")
    assert errors["materials.images.1"] == ("max_size_kb", 500, 501)
    assert errors["materials.images.2"] == ("file_format", ["jpeg", "png"], "gif")
    assert errors["materials.images.3"] == ("file_format", ["jpeg", "png"], "mp4")
    assert errors["materials.images.4"] == ("not_found", None, 999)
    six = interstitial(library, images=[library.add(Upload()) for _ in range(6)])
    assert errors_of(spec("interstitial_image"), six, library)["materials.images"] == ("max_count", 5, 6)


def test_icon_rules() -> None:
    library = Library()
    big_icon = library.add(Upload(width=84, height=84, size_bytes=101 * 1024))
    card = {"images": [], "button_texts": []}
    errors = errors_of(spec("icon_small_card"), interstitial(library, **card, icon=big_icon), library)
    assert errors == {"materials.icon": ("max_size_kb", 100, 101)}
    square = library.add(Upload(width=100, height=100, size_bytes=5000))
    assert errors_of(spec("icon_small_card"), interstitial(library, **card, icon=square), library)[
        "materials.icon"
    ] == ("image_size", ["84x84"], "100x100")
    missing = errors_of(spec("icon_small_card"), interstitial(library, **card, icon=None), library)
    assert missing["materials.icon"][0] == "required"


def test_materials_a_format_does_not_take_are_refused() -> None:
    library = Library()
    errors = errors_of(spec("icon_small_card"), interstitial(library, top_button=True), library)
    assert errors["materials.images"] == ("not_allowed", 0, 1)
    assert errors["materials.button_texts"] == ("not_allowed", 0, 1)
    assert errors["materials.top_button"] == ("not_allowed", 0, 1)


def test_video_rules_are_the_guides_and_no_more() -> None:
    """ "Video: Duration 0-30s, format MP4, file size<=10MB": no ratio or minimum size, which the guide lacks."""
    library = Library()
    square = library.add(Upload(kind="video", format="mp4", width=720, height=720, duration_ms=30_000))
    small = library.add(Upload(kind="video", format="mp4", width=64, height=36, duration_ms=1000))
    long = library.add(Upload(kind="video", format="mp4", width=1280, height=720, duration_ms=30_001))
    heavy = library.add(
        Upload(kind="video", format="mp4", width=720, height=1280, duration_ms=10_000, size_bytes=10 * 1024 * 1024 + 1)
    )
    image = library.add(Upload())
    cover = library.add(Upload(format="jpeg", width=333, height=777, size_bytes=500 * 1024))
    materials = interstitial(library, images=[], cover_image=cover, videos=[square, small, long, heavy, image, square])
    errors = errors_of(spec("interstitial_video"), materials, library)
    assert "materials.videos.0" not in errors and "materials.videos.1" not in errors
    assert "materials.cover_image" not in errors
    assert errors["materials.videos.2"] == ("max_duration_s", 30, 30.001)
    assert errors["materials.videos.3"] == ("max_size_kb", 10240, 10241)
    assert errors["materials.videos.4"] == ("file_format", ["mp4"], "png")
    assert errors["materials.videos"] == ("max_count", 5, 6)
    no_cover = errors_of(spec("rewarded_video"), interstitial(library, images=[], videos=[square]), library)
    assert no_cover == {"materials.cover_image": ("required", 1, 0)}


def message(library: Library, **overrides: object) -> Materials:
    values: dict[str, object] = {
        "business_phone": "+919876543210",
        "business_name": "Mi Store",
        "button_1": "Shop now",
        "descriptions": ["Sale: https://mi.example.com/s"],
        "icon": library.add(Upload(format="jpeg", width=800, height=450, size_bytes=200 * 1024)),
    }
    values.update(overrides)
    return Materials.model_validate(values)


def test_rich_media_message_rules() -> None:
    """Rich media: "Icon ... size 800*450, file size<=200KB", "Business phone number", "Business name: No more than 9
    characters", "Ad description: No more than 40 characters; URL is required", "Button text 1: No more than 28"."""
    library = Library()
    rules = spec("rich_media_business")
    assert errors_of(rules, message(library), library) == {}
    broken = message(
        library,
        business_phone="+91 12",
        business_name="Mi Store X",
        button_1="b" * 29,
        descriptions=["No link here"],
        button_2="Call",
        icon=library.add(Upload(width=800, height=450, size_bytes=200 * 1024 + 1)),
    )
    assert errors_of(rules, broken, library) == {
        "materials.business_phone": ("e164", "E.164, e.g. +6591234567", "+91 12"),
        "materials.business_name": ("max_length", 9, 10),
        "materials.button_1": ("max_length", 28, 29),
        "materials.button_2": ("not_allowed", 0, 1),
        "materials.descriptions.0": ("url_required", "http(s) URL", "No link here"),
        "materials.icon": ("max_size_kb", 200, 201),
    }


def test_sms_text_card_subtitles_are_optional_and_both_buttons_required() -> None:
    library = Library()
    rules = spec("sms_business")
    plain = message(library, icon=None, button_2="Call us")
    assert errors_of(rules, plain, library) == {}
    errors = errors_of(rules, message(library, icon=None, subtitles=["s" * 31, "a", "b", "c"]), library)
    assert errors == {
        "materials.subtitles": ("max_count", 3, 4),
        "materials.subtitles.0": ("max_length", 30, 31),
        "materials.button_2": ("required", 1, 0),
    }


def test_custom_background_colour() -> None:
    library = Library()
    base = {
        "images": [],
        "button_texts": [],
        "descriptions": ["Up to 40"],
        "icon": library.add(Upload(width=180, height=120, size_bytes=1000)),
    }
    rules = spec("custom_background")
    assert errors_of(rules, interstitial(library, **base), library) == {}
    assert errors_of(rules, interstitial(library, **base, background_color="#0a0B0c"), library) == {}
    assert errors_of(rules, interstitial(library, **base, background_color="red; x"), library) == {
        "materials.background_color": ("color_format", "#RRGGBB", "red; x")
    }


def test_push_icon_follows_the_guide_where_the_format_page_differs() -> None:
    """The guide: "Icon ... size 180*180, file size<=100KB"; the public format page says 30 KB."""
    library = Library()
    materials = Materials.model_validate(
        {
            "titles": ["Your parcel is on its way"],
            "descriptions": ["Tap to track it"],
            "icon": library.add(Upload(width=180, height=180, size_bytes=100 * 1024)),
        }
    )
    assert errors_of(spec("push_standard"), materials, library) == {}
    heavier = materials.model_copy(
        update={"icon": library.add(Upload(width=180, height=180, size_bytes=100 * 1024 + 1))}
    )
    assert errors_of(spec("push_standard"), heavier, library) == {"materials.icon": ("max_size_kb", 100, 101)}


def test_texts_with_control_characters_are_refused_naming_the_field_and_rule() -> None:
    """A VAST title is XML, which cannot carry most control characters: none is taken in any text."""
    library = Library()
    materials = interstitial(library, titles=["Big\x0bSale"], descriptions=["Line\nbreak", "Fine"],
                             button_texts=["Go\x00"])
    assert errors_of(spec("interstitial_image"), materials, library) == {
        "materials.titles.0": ("no_control_characters", 0, "U+000B"),
        "materials.descriptions.0": ("no_control_characters", 0, "U+000A"),
        "materials.button_texts.0": ("no_control_characters", 0, "U+0000"),
    }


def test_push_standard_takes_no_emoji() -> None:
    """special_style.html, 2.1 Standard template: "Emoji:X"."""
    library = Library()
    icon = library.add(Upload(width=180, height=180, size_bytes=1000))
    rules = spec("push_standard")
    plain = Materials(titles=["Café: 50% off, ₹99 — 限时优惠"], descriptions=["Şimdi indir → bugün"], icon=icon)
    assert errors_of(rules, plain, library) == {}
    with_emoji = Materials(titles=["Sale 🔥"], descriptions=["Press 1️⃣", "Ships to 🇮🇳", "I ❤️ it"], icon=icon)
    assert errors_of(rules, with_emoji, library) == {
        "materials.titles.0": ("no_emoji", 0, "🔥"),
        "materials.descriptions.0": ("no_emoji", 0, "\ufe0f\u20e3"),
        "materials.descriptions.1": ("no_emoji", 0, "🇮🇳"),
        "materials.descriptions.2": ("no_emoji", 0, "❤️"),
    }


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=60))
def test_title_is_refused_exactly_when_longer_than_30_characters(title: str) -> None:
    library = Library()
    errors = errors_of(
        spec("icon_small_card"), interstitial(library, images=[], button_texts=[], titles=[title]), library
    )
    assert ("materials.titles.0" in errors) == (len(title.strip()) > 30 or not title.strip())
