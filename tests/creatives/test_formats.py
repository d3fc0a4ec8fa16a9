"""The format table and the pure materials validator."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adstack.core.vocabulary import PlacementType
from adstack.creatives.formats import FORMAT_SPECS, SPECS_BY_CODE, FormatSpec, get_spec, validate_materials
from adstack.creatives.models import Materials

# The formats adstack models on Mi Ads'; only the push templates' rules are sourced (see formats.py).
MODELLED_FORMATS = (
    "interstitial_image", "interstitial_video", "rewarded_video", "large_image", "custom_background",
    "icon_small_card", "newsfeed_video", "large_newsfeed_image", "ota_app_recommendations",
    "startup_guide_app_download", "ota_mandatory_pre_install", "image_640x100", "image_600x500", "sms_business",
    "rich_media_business", "wallpaper_carousel",
)


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
        "titles": ["Play now"], "descriptions": ["Fun"], "button_texts": ["Install"],
        "images": [library.add(Upload())], "icon": library.add(Upload(width=84, height=84, size_bytes=20_000)),
    }
    values.update(overrides)
    return Materials.model_validate(values)


def errors_of(spec: FormatSpec, materials: Materials, library: Library) -> dict[str, tuple[str, object, object]]:
    return {e.field: (e.rule, e.limit, e.actual) for e in validate_materials(spec, materials, library.assets)}


def spec(code: str) -> FormatSpec:
    found = get_spec(code)
    assert found is not None
    return found


def test_every_modelled_format_is_in_the_table() -> None:
    assert set(MODELLED_FORMATS) <= set(SPECS_BY_CODE)
    assert len({s.code for s in FORMAT_SPECS}) == len(FORMAT_SPECS)
    served = {p for s in FORMAT_SPECS for p in s.placement_types}
    assert served == set(PlacementType), "every placement type needs at least one format"


def test_interstitial_image_rules() -> None:
    """adstack's own values (unsourced in formats.py), pinned so a change is deliberate."""
    rules = spec("interstitial_image")
    assert rules.images is not None and rules.icon is not None
    assert [str(s) for s in rules.images.sizes] == ["1200x628"]
    assert (rules.images.max_kb, rules.images.max_count) == (500, 5)
    assert set(rules.images.formats) == {"jpg", "jpeg", "png"}
    assert ([str(s) for s in rules.icon.sizes], rules.icon.max_kb) == (["84x84"], 100)
    assert rules.titles is not None and rules.titles.max_chars == 30
    assert rules.descriptions is not None and (rules.descriptions.max_chars, rules.descriptions.max_count) == (80, 3)
    assert rules.button_texts is not None and (rules.button_texts.max_chars, rules.button_texts.max_count) == (15, 3)
    video = spec("interstitial_video").videos
    assert video is not None and (video.formats, video.max_duration_s, video.max_kb) == (("mp4",), 30, 10240)


def test_valid_materials_pass() -> None:
    library = Library()
    assert validate_materials(spec("interstitial_image"), interstitial(library), library.assets) == []


def test_text_rules_name_the_field_rule_limit_and_actual() -> None:
    library = Library()
    materials = interstitial(library, titles=["x" * 31], descriptions=["d"] * 4, button_texts=["b" * 16, "  "])
    errors = errors_of(spec("interstitial_image"), materials, library)
    assert errors["materials.titles.0"] == ("max_length", 30, 31)
    assert errors["materials.descriptions"] == ("max_count", 3, 4)
    assert errors["materials.button_texts.0"] == ("max_length", 15, 16)
    assert errors["materials.button_texts.1"][0] == "required"


def test_duplicates_and_missing_texts() -> None:
    library = Library()
    errors = errors_of(spec("interstitial_image"), interstitial(library, titles=["Same", "same "],
                                                                descriptions=[]), library)
    assert errors["materials.titles.1"][0] == "duplicate"
    assert errors["materials.descriptions"] == ("required", 1, 0)


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
    errors = errors_of(spec("icon_small_card"), interstitial(library, images=[], icon=big_icon), library)
    assert errors == {"materials.icon": ("max_size_kb", 100, 101)}
    square = library.add(Upload(width=100, height=100, size_bytes=5000))
    assert errors_of(spec("icon_small_card"), interstitial(library, images=[], icon=square),
                     library)["materials.icon"] == ("image_size", ["84x84"], "100x100")
    missing = errors_of(spec("icon_small_card"), interstitial(library, images=[], icon=None), library)
    assert missing["materials.icon"][0] == "required"


def test_materials_a_format_does_not_take_are_refused() -> None:
    library = Library()
    errors = errors_of(spec("icon_small_card"), interstitial(library), library)
    assert errors["materials.images"] == ("not_allowed", 0, 1)


def test_video_rules() -> None:
    library = Library()
    ok = library.add(Upload(kind="video", format="mp4", width=1280, height=720, duration_ms=15_000))
    long = library.add(Upload(kind="video", format="mp4", width=1280, height=720, duration_ms=31_000))
    heavy = library.add(Upload(kind="video", format="mp4", width=720, height=1280, duration_ms=10_000,
                               size_bytes=10 * 1024 * 1024 + 1))
    square = library.add(Upload(kind="video", format="mp4", width=720, height=720, duration_ms=10_000))
    small = library.add(Upload(kind="video", format="mp4", width=640, height=360, duration_ms=10_000))
    image = library.add(Upload())
    materials = interstitial(library, images=[], videos=[ok, long, heavy, square, small, image])
    errors = errors_of(spec("interstitial_video"), materials, library)
    assert "materials.videos.0" not in errors
    assert errors["materials.videos.1"] == ("max_duration_s", 30, 31.0)
    assert errors["materials.videos.2"] == ("max_size_kb", 10240, 10241)
    assert errors["materials.videos.3"] == ("aspect_ratio", ["16:9", "9:16"], "720x720")
    assert errors["materials.videos.4"] == ("min_dimensions", "720x720", "640x360")
    assert errors["materials.videos.5"] == ("file_format", ["mp4"], "png")
    assert errors["materials.videos"] == ("max_count", 5, 6)


def test_rich_media_needs_an_image_or_a_video_and_a_brand() -> None:
    library = Library()
    materials = interstitial(library, images=[])
    errors = errors_of(spec("rich_media_business"), materials, library)
    assert errors["materials.images"] == ("required", 1, 0)
    assert errors["materials.brand_name"][0] == "required"
    long_brand = interstitial(library, images=[library.add(Upload(width=1080, height=1080))], brand_name="b" * 21)
    assert errors_of(spec("rich_media_business"), long_brand, library) == {
        "materials.brand_name": ("max_length", 20, 21)}


def push(library: Library, **overrides: object) -> Materials:
    values: dict[str, object] = {
        "titles": ["Your parcel is on its way"], "descriptions": ["Tap to track it"],
        "icon": library.add(Upload(width=180, height=180, size_bytes=20 * 1024)),
    }
    values.update(overrides)
    return Materials.model_validate(values)


def push_images(code: str, library: Library) -> list[int]:
    if code == "push_standard":
        return []
    return [library.add(Upload(width=800, height=360, size_bytes=300 * 1024))]


@pytest.mark.parametrize("code", ["push_standard", "push_big_picture"])
def test_push_title_content_and_icon_follow_the_push_format_page(code: str) -> None:
    """special_style.html, 2.1 and 2.2: "Title:30 characters", "Content:40 characters",
    "ICON: format:jpeg,png,jpg, size:180*180, At most 30kb"."""
    library = Library()
    rules = spec(code)
    at_the_limits = push(library, images=push_images(code, library), titles=["t" * 30], descriptions=["c" * 40],
                         icon=library.add(Upload(format="jpeg", width=180, height=180, size_bytes=30 * 1024)))
    assert errors_of(rules, at_the_limits, library) == {}
    too_long = push(library, images=push_images(code, library), titles=["t" * 31], descriptions=["c" * 41])
    assert errors_of(rules, too_long, library) == {"materials.titles.0": ("max_length", 30, 31),
                                                   "materials.descriptions.0": ("max_length", 40, 41)}
    refused_icons = (
        (Upload(width=181, height=180, size_bytes=1000), ("image_size", ["180x180"], "181x180")),
        (Upload(width=84, height=84, size_bytes=1000), ("image_size", ["180x180"], "84x84")),
        (Upload(width=180, height=180, size_bytes=30 * 1024 + 1), ("max_size_kb", 30, 31)),
        (Upload(format="gif", width=180, height=180, size_bytes=1000), ("file_format", ["jpeg", "png"], "gif")),
    )
    for icon, expected in refused_icons:
        materials = push(library, images=push_images(code, library), icon=library.add(icon))
        assert errors_of(rules, materials, library) == {"materials.icon": expected}


def test_push_big_picture_image_follows_the_push_format_page() -> None:
    """special_style.html, 2.2: "Image: format:jpeg,png,jpg, size:800*360, At most 1024kb"."""
    library = Library()
    rules = spec("push_big_picture")
    documented = library.add(Upload(format="jpeg", width=800, height=360, size_bytes=1024 * 1024))
    assert errors_of(rules, push(library, images=[documented]), library) == {}
    refused = (
        (Upload(width=800, height=361), ("image_size", ["800x360"], "800x361")),
        (Upload(width=1200, height=628), ("image_size", ["800x360"], "1200x628")),
        (Upload(width=800, height=360, size_bytes=1024 * 1024 + 1), ("max_size_kb", 1024, 1025)),
        (Upload(format="gif", width=800, height=360), ("file_format", ["jpeg", "png"], "gif")),
    )
    for image, expected in refused:
        assert errors_of(rules, push(library, images=[library.add(image)]), library) == {"materials.images.0": expected}
    assert errors_of(rules, push(library), library) == {"materials.images": ("required", 1, 0)}


def test_push_standard_takes_no_emoji() -> None:
    """special_style.html, 2.1 Standard template: "Emoji:X"."""
    library = Library()
    rules = spec("push_standard")
    plain = push(library, titles=["Café: 50% off, ₹99 — 限时优惠"], descriptions=["Şimdi indir → bugün"])
    assert errors_of(rules, plain, library) == {}
    with_emoji = push(library, titles=["Sale 🔥", "I ❤️ it"], descriptions=["Press 1️⃣", "Ships to 🇮🇳"])
    assert errors_of(rules, with_emoji, library) == {
        "materials.titles.0": ("no_emoji", None, "🔥"),
        "materials.titles.1": ("no_emoji", None, "❤️"),
        "materials.descriptions.0": ("no_emoji", None, "\ufe0f\u20e3"),
        "materials.descriptions.1": ("no_emoji", None, "🇮🇳"),
    }
    # Only the standard template states the rule; other formats take the same texts.
    assert errors_of(spec("push_big_picture"), push(library, images=push_images("push_big_picture", library),
                                                    titles=["Sale 🔥"]), library) == {}


@pytest.mark.parametrize("code", [s.code for s in FORMAT_SPECS])
def test_every_spec_accepts_materials_built_from_its_own_rules(code: str) -> None:
    rules = spec(code)
    library = Library()
    values: dict[str, object] = {}
    for name in ("titles", "descriptions", "button_texts"):
        text_rule = getattr(rules, name)
        if text_rule is not None:
            values[name] = [f"{name[0]}{i}".ljust(text_rule.max_chars, "x") for i in range(text_rule.max_count)]
    if rules.brand_name is not None:
        values["brand_name"] = "B" * rules.brand_name.max_chars
    if rules.images is not None and rules.images.sizes:
        size = rules.images.sizes[-1]
        values["images"] = [library.add(Upload(width=size.width, height=size.height,
                                               size_bytes=rules.images.max_kb * 1024))
                            for _ in range(rules.images.max_count)]
    if rules.videos is not None:
        ratio = rules.videos.ratios[0] if rules.videos.ratios else None
        width, height = (1280, 720) if ratio is None or ratio.width > ratio.height else (720, 1280)
        values["videos"] = [library.add(Upload(kind="video", format="mp4", width=width, height=height,
                                               duration_ms=rules.videos.max_duration_s * 1000,
                                               size_bytes=rules.videos.max_kb * 1024))]
    if rules.icon is not None:
        icon = rules.icon.sizes[0]
        values["icon"] = library.add(Upload(width=icon.width, height=icon.height, size_bytes=1000))
    assert validate_materials(rules, Materials.model_validate(values), library.assets) == []


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=60))
def test_title_is_refused_exactly_when_longer_than_30_characters(title: str) -> None:
    library = Library()
    errors = errors_of(spec("icon_small_card"), interstitial(library, images=[], titles=[title]), library)
    assert ("materials.titles.0" in errors) == (len(title.strip()) > 30 or not title.strip())
