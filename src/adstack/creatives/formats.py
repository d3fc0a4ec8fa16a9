"""Creative format specs as data: one spec per format, every rule a field, so the console can show the rules and
the validator (material_rules.py) can check them without a database.

Every rule (the materials a format takes and their limits) comes from the Mi Ads Usage Guide, 3.1.3 "Create Ad
Creative", step "Upload ad material information" (the guide beside the project: shared/seeds/001). Each spec below
has a `# Source:` line naming the guide's format heading its materials and limits follow, and its `source` field
says the same to API users. The guide says nothing more about a format: each `description` (what the format is and
where it shows) is adstack's own.

What the guide leaves open, and how it is read here:
- A material without "upload up to N" or "optional" is required once; "upload up to N" means 1 to N.
- "Format jpg/png/jpeg" is JPEG or PNG, "MP4" is MP4; 10MB is 10 x 1024 KB, as the guide writes 1024KB.
- The guide does not pair formats with placements ("Different ad slots correspond to different ad formats");
  `placement_types` is adstack's pairing, from the guide's placement list (3.1.2 "Determine placement").
- Four blocks of the section have no heading. They are named from the guide's placement list, and said so.

This file is the shipped copy. The database keeps an operator-editable copy (creatives.catalog), re-seeded from
here on every migrate with the operator's edits laid over it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from adstack.core.vocabulary import PlacementType
from adstack.creatives import iab_sizes

GUIDE = 'Mi Ads Usage Guide, 3.1.3 "Create Ad Creative", "Upload ad material information"'
# The public Mi Ads format page, for the push templates the guide leaves unnamed.
PUSH_FORMAT_PAGE = ('https://global.e.mi.com/doc/resources/special_style.html (Miads Ads Format, 2023.02), '
                    'I "Introduction of Push", 2 "Ad Format"')


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_count: int = Field(default=1, ge=0, le=20, description="0 when the material is optional.")
    max_count: int = Field(default=1, ge=1, le=20)


class TextRule(_Rule):
    max_chars: int = Field(ge=1, le=500)
    url_required: bool = Field(default=False, description="Each text must contain an http(s) URL.")
    emoji_allowed: bool = True


class Size(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = Field(ge=1, le=10_000)
    height: int = Field(ge=1, le=10_000)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class ImageRule(_Rule):
    formats: tuple[str, ...] = ("jpg", "png", "jpeg")
    sizes: tuple[Size, ...] = Field(default=(), description="Exact pixel sizes accepted; empty when any size is.")
    max_kb: int = Field(ge=1, le=100 * 1024)


class VideoRule(_Rule):
    formats: tuple[str, ...] = ("mp4",)
    min_duration_s: int = Field(default=0, ge=0, le=3600)
    max_duration_s: int = Field(default=30, ge=1, le=3600)
    max_kb: int = Field(default=10 * 1024, ge=1, le=1024 * 1024)


class PhoneRule(_Rule):
    """A phone number in E.164 form (+, country code, number), checked against libphonenumber's metadata."""

    standard: str = "E.164"


class ColorRule(_Rule):
    """A colour as #RRGGBB."""

    pattern: str = "#RRGGBB"


class FlagRule(_Rule):
    """A yes/no choice the advertiser makes; leaving it out means no."""

    min_count: int = 0


class FormatSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    name: str
    description: str = Field(description="What the format is, in adstack's words: the guide gives only its materials "
                                         "and their limits.")
    source: str = Field(description="The guide's heading these rules (materials and limits) follow.")
    placement_types: tuple[PlacementType, ...]
    images: ImageRule | None = None
    videos: VideoRule | None = None
    cover_image: ImageRule | None = Field(default=None, description="The one image shown before a video plays.")
    icon: ImageRule | None = None
    titles: TextRule | None = None
    subtitles: TextRule | None = None
    descriptions: TextRule | None = None
    button_texts: TextRule | None = Field(default=None, description="Alternatives; one is shown at a time.")
    button_1: TextRule | None = Field(default=None, description="The first of two buttons shown together.")
    button_2: TextRule | None = None
    business_name: TextRule | None = None
    business_phone: PhoneRule | None = None
    background_color: ColorRule | None = None
    top_button: FlagRule | None = Field(default=None, description="Whether the ad may show a top button.")


def _sizes(*pairs: tuple[int, int]) -> tuple[Size, ...]:
    return tuple(Size(width=w, height=h) for w, h in pairs)


def _source(heading: str) -> str:
    return f"{GUIDE}, {heading}"


def _image(width: int, height: int, max_kb: int = 500, up_to: int = 1) -> ImageRule:
    return ImageRule(sizes=_sizes((width, height)), max_kb=max_kb, max_count=up_to)


def _text(max_chars: int, up_to: int = 1, *, optional: bool = False, url_required: bool = False) -> TextRule:
    return TextRule(max_chars=max_chars, min_count=0 if optional else 1, max_count=up_to, url_required=url_required)


# The guide repeats these lines word for word under most headings; each spec below still names its own.
ICON_84 = _image(84, 84, max_kb=100)  # "Icon: Format jpg/png/jpeg, size 84*84, file size<=100KB"
# "Icon: Format jpg/png/jpeg, size 180*180, file size<=100KB". The public format page says "At most 30kb" for the
# push icon: the guide is followed, the page is the one that differs.
ICON_180 = _image(180, 180, max_kb=100)
VIDEOS = VideoRule(max_count=5)  # "Video: Duration 0-30s, format MP4, file size<=10MB, upload up to 5 videos"
COVER = ImageRule(max_kb=500)  # "Image: Format jpg/png/jpeg, file size<=500KB, upload 1 image only"
TITLE = _text(30)  # "Ad title: No more than 30 characters"
BUSINESS_NAME = _text(9)  # "Business name: No more than 9 characters"
PHONE = PhoneRule()  # "Business phone number"
SMS_DESCRIPTION = _text(40, url_required=True)  # "Ad description: No more than 40 characters; URL is required"

P = PlacementType

FORMAT_SPECS: tuple[FormatSpec, ...] = (
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *Interstitial image*.
    FormatSpec(
        code="interstitial_image", name="Interstitial image", source=_source("Interstitial image"),
        placement_types=(P.INTERSTITIAL,), description="A full-screen image shown at a natural pause in an app.",
        images=_image(1200, 628, up_to=5), icon=ICON_84, titles=TITLE, descriptions=_text(80, up_to=3),
        button_texts=_text(15, up_to=3),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *Interstitial video*.
    FormatSpec(
        code="interstitial_video", name="Interstitial video", source=_source("Interstitial video"),
        placement_types=(P.INTERSTITIAL,), description="A full-screen video shown at a natural pause in an app.",
        videos=VIDEOS, cover_image=COVER, icon=ICON_84, titles=TITLE, descriptions=_text(80, up_to=3),
        button_texts=_text(15, up_to=3),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of *Rewarded video*.
    FormatSpec(
        code="rewarded_video", name="Rewarded video", source=_source("Rewarded video"),
        placement_types=(P.REWARDED_VIDEO,),
        description="A video the user watches to the end for an in-app reward.",
        videos=VIDEOS, cover_image=COVER, icon=ICON_84, titles=TITLE, descriptions=_text(80, up_to=3),
        button_texts=_text(15, up_to=3),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of *Large image*. The
    # public format page (PUSH_FORMAT_PAGE, 2.2 "Big picture template") gives the same image, icon, title and content
    # for push, so this format serves the push placement.
    FormatSpec(
        code="large_image", name="Large image", source=_source("Large image"), placement_types=(P.PUSH,),
        description="A notification with an 800x360 picture, an icon, a title and a line of text.",
        images=_image(800, 360, max_kb=1024, up_to=5), icon=ICON_180, titles=TITLE, descriptions=_text(40, up_to=3),
        top_button=FlagRule(),  # "Top button: Confirm whether to allow"
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of the block after
    # *Large image*, which has no heading. Named from the guide's placement list (PUSH): it is the public format page's
    # 2.1 "Standard template" (PUSH_FORMAT_PAGE), whose "Emoji: X" is the one rule taken from that page.
    FormatSpec(
        code="push_standard", name="Push standard", source=_source("block after \"Large image\" (no heading)"),
        placement_types=(P.PUSH,), description="A notification with an icon, a title and a line of text.",
        icon=ICON_180, titles=TITLE.model_copy(update={"emoji_allowed": False}),
        descriptions=_text(40, up_to=3).model_copy(update={"emoji_allowed": False}),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *Custom background*.
    FormatSpec(
        code="custom_background", name="Custom background", source=_source("Custom background"),
        placement_types=(P.ICON,), description="An app card on a background colour of the advertiser's choice.",
        icon=_image(180, 120, max_kb=100), titles=TITLE, descriptions=_text(40, up_to=3),
        background_color=ColorRule(min_count=0),  # "Background color: optional"
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of *Icon small card*.
    FormatSpec(
        code="icon_small_card", name="Icon small card", source=_source("Icon small card"),
        placement_types=(P.ICON,), description="A small card: the app icon, a title and a description.",
        icon=ICON_84, titles=TITLE, descriptions=_text(80),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of *Newsfeed video*.
    FormatSpec(
        code="newsfeed_video", name="Newsfeed video", source=_source("Newsfeed video"),
        placement_types=(P.NEWSFEED,), description="A video in a content feed (the guide's information stream).",
        videos=VIDEOS, icon=ICON_84, titles=TITLE, descriptions=_text(80, up_to=3), button_texts=_text(15, up_to=3),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *Large newsfeed image*. Its "Materials can be uploaded locally or from media center" is met by /media: every
    # upload of the account can be reused.
    FormatSpec(
        code="large_newsfeed_image", name="Large newsfeed image", source=_source("Large newsfeed image"),
        placement_types=(P.NEWSFEED,), description="A large 1200x628 image in a content feed.",
        images=_image(1200, 628, up_to=10), icon=ICON_84, titles=TITLE, descriptions=_text(80, up_to=3),
        button_texts=_text(15, up_to=3),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *OTA app recommendations*.
    FormatSpec(
        code="ota_app_recommendations", name="OTA app recommendations", source=_source("OTA app recommendations"),
        placement_types=(P.ICON,), description="Apps recommended on the screen shown after a system (OTA) update.",
        icon=ICON_84, titles=TITLE, descriptions=_text(80),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *Startup guide app download*.
    FormatSpec(
        code="startup_guide_app_download", name="Startup guide app download",
        source=_source("Startup guide app download"), placement_types=(P.ICON,),
        description="Apps offered for download in the device's first-start setup guide.",
        icon=ICON_84, titles=TITLE, descriptions=_text(80),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *OTA mandatory pre-install*.
    FormatSpec(
        code="ota_mandatory_pre_install", name="OTA mandatory pre-install", source=_source("OTA mandatory pre-install"),
        placement_types=(P.ICON,), description="An app installed with a system (OTA) update.",
        icon=ICON_84, titles=TITLE, descriptions=_text(80),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of the block after
    # *OTA mandatory pre-install*, which has no heading. Named from the guide's placement list (banner) and its one
    # material, a 640x100 image.
    FormatSpec(
        code="image_640x100", name="Banner 640x100",
        source=_source("block after \"OTA mandatory pre-install\" (no heading)"), placement_types=(P.BANNER,),
        description="A 640x100 banner image.", images=_image(640, 100, up_to=5),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of the 600x500 block
    # before the one with subtitles, which has no heading. Named from the guide's placement list (SMS): it has the
    # business phone, business name and URL-bearing description of the SMS blocks, with a 600x500 image.
    FormatSpec(
        code="sms_image", name="SMS image card", source=_source("600*500 block (no heading)"),
        placement_types=(P.SMS,), description="A business message with a 600x500 image, an icon and a link.",
        images=_image(600, 500, up_to=5), icon=ICON_180, business_phone=PHONE, business_name=BUSINESS_NAME,
        descriptions=SMS_DESCRIPTION,
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of the block before
    # *Rich media*, which has no heading. Named from the guide's placement list (SMS): a text message card with
    # subtitles and two buttons.
    FormatSpec(
        code="sms_business", name="SMS text card", source=_source("block before \"Rich media\" (no heading)"),
        placement_types=(P.SMS,),
        description="A business message: business name and phone, up to three subtitles, a link, two buttons.",
        business_phone=PHONE, business_name=BUSINESS_NAME, subtitles=_text(30, up_to=3, optional=True),
        descriptions=SMS_DESCRIPTION, button_1=_text(28), button_2=_text(28),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of *Rich media*. The
    # guide calls its 800x450 picture the "Icon", so it is the icon here; previews show it as the card's picture.
    FormatSpec(
        code="rich_media_business", name="Rich media", source=_source("Rich media"), placement_types=(P.SMS,),
        description="A rich business message: an 800x450 picture, business name and phone, a link, a button.",
        icon=_image(800, 450, max_kb=200), business_phone=PHONE, business_name=BUSINESS_NAME,
        descriptions=SMS_DESCRIPTION, button_1=_text(28),
    ),
    # Source: Mi Ads Usage Guide, 3.1.3 "Upload ad material information", the materials and limits of
    # *Wallpaper carousel*.
    FormatSpec(
        code="wallpaper_carousel", name="Wallpaper carousel", source=_source("Wallpaper carousel"),
        placement_types=(P.WALLPAPER_CAROUSEL,), description="A full-screen 720x1600 lock-screen wallpaper.",
        images=_image(720, 1600), icon=ICON_84, titles=TITLE, descriptions=_text(80), button_texts=_text(15),
    ),
)

# The IAB display sizes exchanges buy (OpenRTB), beside the guide's formats.
FORMAT_SPECS = (*FORMAT_SPECS, *iab_sizes.format_specs())

SPECS_BY_CODE: dict[str, FormatSpec] = {spec.code: spec for spec in FORMAT_SPECS}
FORMAT_CODES: tuple[str, ...] = tuple(SPECS_BY_CODE)

# Every material a spec can rule, in the order forms and errors list them.
TEXT_LISTS = ("titles", "subtitles", "descriptions", "button_texts")
SINGLE_TEXTS = ("button_1", "button_2", "business_name")
MEDIA_LISTS = ("images", "videos")
SINGLE_MEDIA = ("cover_image", "icon")
RULE_FIELDS = (*MEDIA_LISTS, *SINGLE_MEDIA, *TEXT_LISTS, *SINGLE_TEXTS, "business_phone", "background_color",
               "top_button")


def get_spec(code: str) -> FormatSpec | None:
    """The shipped spec; the service reads the operator-edited one (creatives.catalog)."""
    return SPECS_BY_CODE.get(code)


def formats_for_placement(placement_type: str, specs: tuple[FormatSpec, ...] = FORMAT_SPECS) -> list[FormatSpec]:
    return [spec for spec in specs if placement_type in spec.placement_types]
