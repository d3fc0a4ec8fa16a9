"""Advertised apps, their attribution settings and event-name mappings: tables and API schemas."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base, TimestampMixin
from adstack.core.ids import EntityId
from adstack.core.vocabulary import ConversionEvent, Partner

DEFAULT_CLICK_LOOKBACK_DAYS = 7
DEFAULT_VIEW_THROUGH_HOURS = 24
DEFAULT_REATTRIBUTION_DAYS = 90


class Platform(StrEnum):
    ANDROID = "android"


class AppStore(StrEnum):
    GETAPPS = "getapps"
    GOOGLE_PLAY = "google_play"
    OTHER = "other"


class ConditionOperator(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    EXISTS = "exists"


class App(Base, TimestampMixin):
    __tablename__ = "apps"
    __table_args__ = (Index("ix_apps_account_package", "account_id", "package_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    package_name: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(16), default=Platform.ANDROID)
    store: Mapped[str] = mapped_column(String(16), default=AppStore.GOOGLE_PLAY)
    partner: Mapped[str | None] = mapped_column(String(16))
    # The partner's own id for this app or link: AppsFlyer app id, Adjust tracker token, Branch link, ...
    partner_link_id: Mapped[str] = mapped_column(String(200), default="")
    click_lookback_days: Mapped[int] = mapped_column(default=DEFAULT_CLICK_LOOKBACK_DAYS)
    view_through_enabled: Mapped[bool] = mapped_column(default=True)
    view_through_hours: Mapped[int] = mapped_column(default=DEFAULT_VIEW_THROUGH_HOURS)
    reattribution_window_days: Mapped[int] = mapped_column(default=DEFAULT_REATTRIBUTION_DAYS)
    event_window_days: Mapped[int | None]  # None = lifetime
    # Who decides attribution: the partner's verdict where it sends one (default), or adstack's own rules.
    attribution_authority: Mapped[str] = mapped_column(String(12), default="partner")
    # The name adstack is registered under with the partner (AppsFlyer pid, Singular network, Branch $3p, ...);
    # empty = the platform's default for that partner.
    partner_network_name: Mapped[str] = mapped_column(String(100), default="")
    deleted_at: Mapped[datetime | None]


class EventMapping(Base):
    """A partner's event name (or Adjust token) → INSTALL or one of the 22 events, optionally only when the
    event's parameters meet every condition. Rules are tried in position order; the first match wins."""

    __tablename__ = "app_event_mappings"
    __table_args__ = (Index("ix_app_event_mappings_app", "app_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    source_name: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(32))
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


# ---------- API schemas ----------

PackageName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$",
                                               max_length=255)]
AppName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
PartnerLinkId = Annotated[str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9_\-.@/]*$")]
NetworkName = Annotated[str, StringConstraints(max_length=100, pattern=r"^[A-Za-z0-9_\-. ]*$")]


class AttributionAuthority(StrEnum):
    PARTNER = "partner"
    ADSTACK = "adstack"
LookbackDays = Annotated[int, Field(ge=1, le=30, description="Click-through lookback, 1-30 days.")]
ViewThroughHours = Annotated[int, Field(ge=1, le=168, description="View-through window in hours.")]
ReattributionDays = Annotated[int, Field(ge=1, le=365, description="Re-attribution window in days.")]
EventWindowDays = Annotated[int, Field(ge=1, le=3650, description="In-app event window; null for lifetime.")]


class AppCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: EntityId | None = None
    package_name: PackageName
    name: AppName
    platform: Platform = Platform.ANDROID
    store: AppStore = AppStore.GOOGLE_PLAY
    partner: Partner | None = None
    partner_link_id: PartnerLinkId = ""
    click_lookback_days: LookbackDays = DEFAULT_CLICK_LOOKBACK_DAYS
    view_through_enabled: bool = True
    view_through_hours: ViewThroughHours = DEFAULT_VIEW_THROUGH_HOURS
    reattribution_window_days: ReattributionDays = DEFAULT_REATTRIBUTION_DAYS
    event_window_days: EventWindowDays | None = None
    attribution_authority: AttributionAuthority = AttributionAuthority.PARTNER
    partner_network_name: NetworkName = ""


class AppUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AppName | None = None
    store: AppStore | None = None
    partner: Partner | None = None
    partner_link_id: PartnerLinkId | None = None
    click_lookback_days: LookbackDays | None = None
    view_through_enabled: bool | None = None
    view_through_hours: ViewThroughHours | None = None
    reattribution_window_days: ReattributionDays | None = None
    event_window_days: EventWindowDays | None = None
    attribution_authority: AttributionAuthority | None = None
    partner_network_name: NetworkName | None = None


class AppRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    package_name: str
    name: str
    platform: Platform
    store: AppStore
    partner: Partner | None
    partner_link_id: str
    click_lookback_days: int
    view_through_enabled: bool
    view_through_hours: int
    reattribution_window_days: int
    event_window_days: int | None
    attribution_authority: AttributionAuthority
    partner_network_name: str
    created_at: datetime
    updated_at: datetime


ConditionValue = Annotated[str, StringConstraints(max_length=200)]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    param: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Event parameter name, e.g. `level` (nested JSON keys joined with dots).")
    op: ConditionOperator = ConditionOperator.EQ
    value: ConditionValue | list[ConditionValue] = Field(
        default="", description="Compared as a number when both sides are numbers, else as text.")

    @field_validator("value")
    @classmethod
    def _bounded_list(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) > 50:
            raise ValueError("at most 50 values")
        return value


class EventMappingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="The partner's event name or Adjust event token, e.g. af_purchase.")
    event: ConversionEvent
    conditions: Annotated[list[Condition], Field(max_length=10)] = []


class EventMappingRead(EventMappingIn):
    model_config = ConfigDict(from_attributes=True)

    id: int
    position: int


class EventMappingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mappings: Annotated[list[EventMappingIn], Field(max_length=200)]


class IntegrationRead(BaseModel):
    partner: Partner
    partner_name: str
    tracking_link_template: str | None = Field(
        description="The partner's click link; {click_id}, {gaid} and the id macros are filled per click. Null "
                    "until the partner's tracker id is filled in (see `missing`).")
    view_through_link_template: str | None = Field(
        description="The partner's impression (view-through) link, fired per impression; null as above, or when "
                    "the app has view-through off.")
    postback_url_template: str = Field(description="Submit to the partner as the install and event postback.")
    missing: list[str] = Field(default_factory=list, description="What to fill in before links can be shown.")
    requires_network_registration: bool = Field(
        description="The partner sends postbacks only to networks registered with it: the operator registers "
                    "adstack under `network_name` and submits the postback template.")
    network_name: str = Field(description="The name adstack is registered under with this partner.")
    documentation: list[str] = Field(default_factory=list, description="The partner's pages the macros come from.")
    unverified_macros: list[str] = Field(
        default_factory=list,
        description="Macros of `postback_url_template` that none of the partner's pages adstack was checked against "
                    "names (docs/partners.md): confirm them with the partner before submitting the template.")
    click_id_parameter: str
    gaid_parameter: str
    macro_syntax: str
    steps: list[str]
    event_mapping: dict[str, ConversionEvent] = Field(
        description="Effective event-name mapping: the app's own rules first, then the partner's standard names.")
