"""Creatives: the table and the API schemas. Format rules live in formats.py."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.campaigns.enums import ServingStatus, UserStatus
from adstack.core.db import Base, TimestampMixin
from adstack.core.ids import EntityId
from adstack.core.vocabulary import NO_LINGUISTIC_CONTENT
from adstack.creatives.formats import FORMAT_CODES
from adstack.creatives.material_rules import e164
from adstack.review.models import ReviewStatus

# Python enum generated from the format table, so the OpenAPI lists every code.
CreativeFormat = StrEnum("CreativeFormat", {code.upper(): code for code in FORMAT_CODES})  # type: ignore[misc]

MAX_TRACKING_URLS = 5


class Creative(Base, TimestampMixin):
    __tablename__ = "creatives"
    __table_args__ = (Index("ix_creatives_account_status", "account_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    ad_group_id: Mapped[int] = mapped_column(ForeignKey("ad_groups.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    format: Mapped[str] = mapped_column(String(64))
    # Materials.model_dump(): texts, media ids and the message-card fields.
    materials: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    click_url: Mapped[str] = mapped_column(String(2048))
    deeplink: Mapped[str | None] = mapped_column(String(2048))
    impression_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    # {"start": [...], "first_quartile": [...], "midpoint": [...], "third_quartile": [...]}
    video_tracking: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ENABLED)
    review_status: Mapped[str] = mapped_column(String(20), default=ReviewStatus.TO_BE_SUBMITTED)
    rejection_reasons: Mapped[str] = mapped_column(String(2000), default="")
    created_by_user_id: Mapped[int | None]
    deleted_at: Mapped[datetime | None]


class CreativeFormatRules(Base, TimestampMixin):
    """The operator-editable copy of a format's rules. formats.py ships them; every migrate lays the operator's
    edits over the shipped rules again, so a new release's corrections arrive and the operator's changes stay."""

    __tablename__ = "creative_formats"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The rules in force: formats.FormatSpec.model_dump(mode="json") with the edits applied.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # {rule field: {attribute: value}}, e.g. {"images": {"max_kb": 600}}.
    edits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    edited_by_user_id: Mapped[int | None]


# ---------- API schemas ----------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# Generous raw bounds; each format's real limits are checked by formats.validate_materials with named rules.
MaterialText = Annotated[str, StringConstraints(max_length=500)]
PhoneText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)]
ColorText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)]
HttpUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048,
                                           pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+[^\s]*$")]
# Schemes a browser or web view runs or reads locally instead of opening an app: never a click's destination.
FORBIDDEN_DEEPLINK_SCHEMES = ("javascript", "data", "file", "vbscript")


def _allowed_scheme(value: str) -> str:
    scheme = value.split(":", 1)[0].lower()
    if scheme in FORBIDDEN_DEEPLINK_SCHEMES:
        raise PydanticCustomError("forbidden_scheme", "the {scheme}: scheme is not allowed in a deeplink",
                                  {"scheme": scheme, "limit": list(FORBIDDEN_DEEPLINK_SCHEMES)})
    return value


Deeplink = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048,
                                            pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://?[^\s]*$"),
                     AfterValidator(_allowed_scheme)]
TrackingUrls = Annotated[list[HttpUrl], Field(max_length=MAX_TRACKING_URLS)]


def _iso_639_1(value: str) -> str:
    if value != NO_LINGUISTIC_CONTENT and pycountry.languages.get(alpha_2=value) is None:
        raise PydanticCustomError("language_code", "{actual} is not an ISO 639-1 language code", {"actual": value})
    return value


# The language of an ad's text, as OpenRTB's `wlang` and a bid's `language` name it: ISO 639-1 alpha-2.
LanguageCode = Annotated[str, BeforeValidator(lambda value: value.strip().lower() if isinstance(value, str) else value),
                         StringConstraints(pattern=r"^[a-z]{2}$"), AfterValidator(_iso_639_1)]


class Materials(BaseModel):
    """What the creative is made of; each format takes some of these (GET /creative-formats says which).
    Images, videos, the cover image and the icon are ids of the account's uploads (/media)."""

    model_config = ConfigDict(extra="forbid")

    titles: list[MaterialText] = Field(default_factory=list, max_length=20)
    subtitles: list[MaterialText] = Field(default_factory=list, max_length=20,
                                          description="Ad subtitles 1 to 3, shown together.")
    descriptions: list[MaterialText] = Field(default_factory=list, max_length=20)
    button_texts: list[MaterialText] = Field(default_factory=list, max_length=20,
                                             description="Alternative button texts; one is shown at a time.")
    button_1: MaterialText | None = Field(default=None, description="Button text 1 of a message card.")
    button_2: MaterialText | None = Field(default=None, description="Button text 2 of a message card.")
    images: list[EntityId] = Field(default_factory=list, max_length=20, description="Media ids of images.")
    videos: list[EntityId] = Field(default_factory=list, max_length=20, description="Media ids of MP4 videos.")
    cover_image: EntityId | None = Field(default=None, description="Media id of a video format's cover image.")
    icon: EntityId | None = Field(default=None, description="Media id of the icon image.")
    business_name: MaterialText | None = None
    business_phone: PhoneText | None = Field(default=None, description="E.164, e.g. +6591234567.")
    background_color: ColorText | None = Field(default=None, description="#RRGGBB.")
    top_button: bool | None = Field(default=None, description="Whether the ad may show a top button.")
    language: LanguageCode | None = Field(default=None, description=(
        "The language of the ad's text, ISO 639-1 (en, hi, id), or xx for an ad without text (a logo). An "
        "exchange that allows only some languages (OpenRTB `wlang`/`wlangb`) is bid on only with creatives that "
        "name one of them, or xx; bids carry it."))

    @model_validator(mode="before")
    @classmethod
    def _stored_brand_name(cls, data: Any) -> Any:
        # Creatives stored before the guide's "Business name" was adopted call it brand_name.
        if isinstance(data, dict) and "brand_name" in data:
            data = dict(data)
            brand = data.pop("brand_name")
            data.setdefault("business_name", brand)
        return data

    @field_validator("business_phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        # "+65 9123 4567" is stored as +6591234567; what cannot be read is left for the format check to name.
        return (e164(value) or value) if value else value


class VideoTracking(BaseModel):
    """Third-party URLs called as a video reaches each point."""

    model_config = ConfigDict(extra="forbid")

    start: TrackingUrls = Field(default_factory=list)
    first_quartile: TrackingUrls = Field(default_factory=list)
    midpoint: TrackingUrls = Field(default_factory=list)
    third_quartile: TrackingUrls = Field(default_factory=list)


class CreativeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    materials: Materials
    click_url: HttpUrl = Field(description="Where a click lands; http or https.")
    deeplink: Deeplink | None = Field(default=None, description="Opens the app when installed.")
    impression_urls: TrackingUrls = Field(default_factory=list, description="Impression-monitoring URLs.")
    video_tracking: VideoTracking = Field(default_factory=VideoTracking)


class CreativeCreate(CreativeFields):
    ad_group_id: EntityId
    name: Name
    format: CreativeFormat
    status: Literal["enabled", "paused"] = "enabled"


class CreativeUpdate(BaseModel):
    """Only the fields sent change. Anything but the name sends an approved creative back to review."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    format: CreativeFormat | None = None
    materials: Materials | None = None
    click_url: HttpUrl | None = None
    deeplink: Deeplink | None = None
    impression_urls: TrackingUrls | None = None
    video_tracking: VideoTracking | None = None

    @field_validator("name", "format", "materials", "click_url", "impression_urls", "video_tracking")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value


class CreativeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    ad_group_id: int
    campaign_id: int | None = None
    name: str
    format: str
    materials: Materials
    click_url: str
    deeplink: str | None
    impression_urls: list[str]
    video_tracking: VideoTracking
    status: UserStatus
    review_status: ReviewStatus
    rejection_reasons: str
    serving_status: ServingStatus | None = None
    serving_reason: str = ""
    expected_review_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    notice: str | None = Field(default=None, description="Side effects the caller should know about.")


class CreativePage(BaseModel):
    total: int
    items: list[CreativeRead]


class CreativeStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["enabled", "paused", "deleted"]


class CreativeSort(StrEnum):
    ID = "id"
    NAME = "name"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    STATUS = "status"
    REVIEW_STATUS = "review_status"


class PreviewIn(BaseModel):
    """Unsaved materials, rendered as the console edits them. Media must belong to the account."""

    model_config = ConfigDict(extra="forbid")

    format: CreativeFormat
    materials: Materials
    account_id: EntityId | None = Field(default=None, description="Whose uploads the materials use.")
    click_url: HttpUrl | None = None


class FormatEditIn(BaseModel):
    """The operator's changes to a format's rules, replacing earlier ones; {} restores the shipped rules."""

    model_config = ConfigDict(extra="forbid")

    edits: dict[Annotated[str, StringConstraints(max_length=32)], dict[Annotated[str, StringConstraints(
        max_length=32)], Any]] = Field(max_length=20, description='{rule: {attribute: value}}, e.g. '
                                       '{"images": {"max_kb": 600}}. Rules and attributes as GET shows them.')


class RejectionRead(BaseModel):
    reasons: list[str]
    actor_user_id: int | None
    created_at: datetime
