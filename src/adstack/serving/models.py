"""The SDK's ad request and response. Serving keeps no tables: it reads the control plane into a snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints

from adstack.campaigns.targeting import Gender, Network
from adstack.core.ids import MAX_ID

# The request's limits, shared by the pydantic model and its msgspec mirror below.
MAX_TEXT = 100
MAX_PACKAGE = 255
MAX_GAID = 64
MAX_OS_VERSION = 32
MAX_LANGUAGE = 35
MAX_IP = 45
MAX_AGE = 120
MAX_USAGE_SECONDS = 86_400
MAX_ADS_PER_REQUEST = 10
MAX_REPORTED_PACKAGES = 1000

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT)]
# A number is a JSON number: "5", 5.0 and true are refused, as the msgspec mirror refuses them.
Whole = Annotated[int, Strict()]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# SDKs write "4G" or "WIFI" as readily as "4g": the values are the same words in any case.
AnyCase = BeforeValidator(_lower)
Package = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PACKAGE)]


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    gaid: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_GAID)] | None = Field(
        default=None, description="Google advertising id.")
    os_version: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_OS_VERSION)] | None = None
    model: Text | None = None
    language: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_LANGUAGE)] | None = Field(
        default=None, description="e.g. en or en-US.")
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1 alpha-2; without it the ad space's publisher's country is used.")
    ip: Annotated[str, StringConstraints(max_length=MAX_IP)] | None = None
    network: Annotated[Network, AnyCase] | None = None
    carrier: Text | None = None


class UserIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    age: Whole | None = Field(default=None, ge=0, le=MAX_AGE)
    gender: Annotated[Gender, AnyCase] | None = None


class AppIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    package: Package | None = Field(default=None, description="The app the ad space is in.")
    installed_packages: list[Package] | None = Field(
        default=None, max_length=MAX_REPORTED_PACKAGES,
        description="Installed apps, when the SDK may report them; absent = not reported.")
    usage_seconds: dict[Package, Annotated[Whole, Field(ge=0, le=MAX_USAGE_SECONDS)]] | None = Field(
        default=None, max_length=MAX_REPORTED_PACKAGES, description="Seconds of use per app today.")


class AdRequestIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ad_space_id: Whole = Field(ge=1, le=MAX_ID)
    count: Whole = Field(default=1, ge=1, le=MAX_ADS_PER_REQUEST, description="Ads wanted.")
    device: DeviceIn = Field(default_factory=DeviceIn)
    user: UserIn = Field(default_factory=UserIn)
    app: AppIn = Field(default_factory=AppIn)


# The same request as msgspec structs, for the hot path (`fastpath.py`): the same fields, defaults and limits, so
# what they accept `AdRequestIn` accepts with the same values. msgspec cannot strip whitespace, so a string with
# whitespace at either end is refused here (`decode_ad_request`), as is anything else these do not take as is
# (a numeric string, a float id): those requests go to the route, and pydantic's rules decide them.
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
_Package = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PACKAGE)]


class DeviceWire(msgspec.Struct):
    gaid: Annotated[str, msgspec.Meta(max_length=MAX_GAID)] | None = None
    os_version: Annotated[str, msgspec.Meta(max_length=MAX_OS_VERSION)] | None = None
    model: _Text | None = None
    language: Annotated[str, msgspec.Meta(max_length=MAX_LANGUAGE)] | None = None
    # \Z, not $: in Python's re, $ also matches before a final newline, which pydantic's pattern refuses.
    country: Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z]{2}\Z")] | None = None
    ip: Annotated[str, msgspec.Meta(max_length=MAX_IP)] | None = None
    network: Network | None = None
    carrier: _Text | None = None


class UserWire(msgspec.Struct):
    age: Annotated[int, msgspec.Meta(ge=0, le=MAX_AGE)] | None = None
    gender: Gender | None = None


class AppWire(msgspec.Struct):
    package: _Package | None = None
    installed_packages: Annotated[list[_Package], msgspec.Meta(max_length=MAX_REPORTED_PACKAGES)] | None = None
    usage_seconds: Annotated[dict[_Package, Annotated[int, msgspec.Meta(ge=0, le=MAX_USAGE_SECONDS)]],
                             msgspec.Meta(max_length=MAX_REPORTED_PACKAGES)] | None = None


class AdRequestWire(msgspec.Struct):
    ad_space_id: Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_ADS_PER_REQUEST)] = 1
    device: DeviceWire = msgspec.field(default_factory=DeviceWire)
    user: UserWire = msgspec.field(default_factory=UserWire)
    app: AppWire = msgspec.field(default_factory=AppWire)


_WIRE_DECODER = msgspec.json.Decoder(AdRequestWire)


def _trimmed(text: str | None) -> bool:
    return text is None or text == text.strip()


def _all_trimmed(texts: Iterable[str] | None) -> bool:
    return texts is None or all(map(_trimmed, texts))


def decode_ad_request(body: bytes) -> AdRequestWire | None:
    """The request as `AdRequestIn` would read it, or None where only the route's validation can say."""
    try:
        data = _WIRE_DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):  # nested past msgspec's depth
        return None
    device, app = data.device, data.app
    if not (_trimmed(device.gaid) and _trimmed(device.os_version) and _trimmed(device.model)
            and _trimmed(device.language) and _trimmed(device.carrier) and _trimmed(app.package)):
        return None
    if not (_all_trimmed(app.installed_packages) and _all_trimmed(app.usage_seconds)):
        return None
    return data


AdRequestData = AdRequestIn | AdRequestWire


class AdTracking(BaseModel):
    impression: list[str] = Field(description="Call every URL once when the ad is shown.")
    click: list[str] = Field(description="Third-party click trackers; the ad's click_url already counts the click.")
    video: dict[str, list[str]] = Field(default_factory=dict,
                                        description="start, first_quartile, midpoint, third_quartile, complete.")


class AdOut(BaseModel):
    impression_id: str
    campaign_id: int
    ad_group_id: int
    creative_id: int
    format: str
    title: str = ""
    description: str = ""
    image_url: str = ""
    video_url: str = ""
    icon_url: str = ""
    button: str = ""
    width: int = 0
    height: int = 0
    duration_ms: int = 0
    click_url: str = Field(description="Open this on a click: it counts the click and redirects.")
    landing_url: str = Field(default="", description=(
        "Where a click ends: the creative's click URL with its macros filled (click_url reaches it, through the "
        "app's measurement-partner link where the partner can redirect there)."))
    deeplink: str = ""
    # Source: Mi Ads Usage Guide, "Upload ad material information" (the SMS and rich-media blocks, Large image,
    # Custom background, the video formats' cover image): creative-wide, empty where the format has none.
    business_name: str = Field(default="", description="The advertiser's name on a message card.")
    business_phone: str = Field(default="", description="The business phone number, E.164 (e.g. +6591234567).")
    subtitles: list[str] = Field(default_factory=list, description="Ad subtitles 1 to 3, shown together.")
    button_1: str = Field(default="", description="Button text 1 of a message card.")
    button_2: str = Field(default="", description="Button text 2 of a message card.")
    background_color: str = Field(default="", description="The card's background colour, #RRGGBB.")
    top_button: bool = Field(default=False, description="Whether the ad may show a top button.")
    cover_image_url: str = Field(default="", description="The image shown before a video plays.")
    cover_width: int = 0
    cover_height: int = 0
    tracking: AdTracking


class AdResponseOut(BaseModel):
    request_id: str
    ad_space_id: int
    ads: list[AdOut]
