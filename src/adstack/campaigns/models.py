"""Campaigns and ad groups: tables and API schemas."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.campaigns.enums import (
    BID_TYPES_BY_OBJECTIVE,
    BidType,
    LandingKind,
    MarketingObjective,
    Pacing,
    PromotionChannel,
    PromotionType,
    ServingStatus,
    StatusAction,
    TargetGroup,
    UserStatus,
)
from adstack.campaigns.iab_categories import MAX_CATEGORIES, check_categories
from adstack.campaigns.targeting import PackageName, Targeting
from adstack.core.db import Base, TimestampMixin
from adstack.core.ids import MAX_ID, EntityId
from adstack.core.money import Micros
from adstack.core.timeutil import validate_time_zone
from adstack.core.vocabulary import ConversionEvent, PlacementType
from adstack.review.models import ReviewStatus

__all__ = [
    "BID_TYPES_BY_OBJECTIVE",
    "AdGroup",
    "BidType",
    "Campaign",
    "LandingKind",
    "MarketingObjective",
    "Pacing",
    "PromotionChannel",
    "PromotionType",
    "ServingStatus",
    "StatusAction",
    "TargetGroup",
    "UserStatus",
]


class Campaign(Base, TimestampMixin):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_account_status", "account_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    objective: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    promotion_type: Mapped[str] = mapped_column(String(16))
    package_name: Mapped[str | None] = mapped_column(String(255))
    landing_kind: Mapped[str | None] = mapped_column(String(16))
    landing_url: Mapped[str | None] = mapped_column(String(2048))
    # IAB Content Taxonomy 1.0 codes (campaigns/iab_categories.py): exchanges block on them (bcat).
    iab_categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ENABLED)
    deleted_at: Mapped[datetime | None]


class AdGroup(Base, TimestampMixin):
    __tablename__ = "ad_groups"
    __table_args__ = (
        Index("ix_ad_groups_account_status", "account_id", "status"),
        Index("ix_ad_groups_campaign", "campaign_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    name: Mapped[str] = mapped_column(String(100))
    promotion_channel: Mapped[str] = mapped_column(String(16), default=PromotionChannel.GETAPPS)
    target_group: Mapped[str] = mapped_column(String(32), default=TargetGroup.ALL_USERS)
    placement_type: Mapped[str] = mapped_column(String(32))
    publisher_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    ad_space_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    targeting: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    # 7 rows (Monday first) x 24 hours of the ad group's time zone; NULL = all day, every day.
    dayparting: Mapped[list[list[bool]] | None] = mapped_column(JSON)
    total_budget_micros: Mapped[int | None]
    daily_budget_micros: Mapped[int | None]
    pacing: Mapped[str] = mapped_column(String(8), default=Pacing.EVEN)
    frequency_cap_per_day: Mapped[int | None]
    bid_type: Mapped[str] = mapped_column(String(16))
    bid_micros: Mapped[int]
    conversion_event: Mapped[str | None] = mapped_column(String(32))
    booked_impressions: Mapped[int | None]
    # CPT: [{"start": iso UTC, "end": iso UTC}, ...]
    booked_slots: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ENABLED)
    review_status: Mapped[str] = mapped_column(String(20), default=ReviewStatus.TO_BE_SUBMITTED)
    rejection_reasons: Mapped[str] = mapped_column(String(2000), default="")
    deleted_at: Mapped[datetime | None]

    def targeting_spec(self) -> Targeting:
        return Targeting.model_validate(self.targeting or {})


# ---------- API schemas ----------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
LandingUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$")]
IabCategories = Annotated[
    list[Annotated[str, StringConstraints(max_length=8)]], Field(max_length=MAX_CATEGORIES),
    AfterValidator(check_categories),
    Field(description="What the ads are about, as IAB Content Taxonomy 1.0 codes (IAB1 to IAB26, e.g. IAB9-30): "
                      "exchanges that block a category get no bids from the campaign. Checked in review.")]
IdList = Annotated[list[EntityId], Field(max_length=500)]
HourRow = Annotated[list[bool], Field(min_length=24, max_length=24)]
Dayparting = Annotated[list[HourRow], Field(min_length=7, max_length=7,
                                            description="7 rows, Monday first, of 24 hours in the ad group's zone.")]
SettableStatus = Literal["enabled", "paused"]
BidMicros = Annotated[int, Field(ge=1, le=10**15, description="Integer micros of the account currency.")]
FrequencyCap = Annotated[int, Field(ge=1, le=1000, description="Impressions per device per day.")]
BookedImpressions = Annotated[int, Field(ge=1, le=10**12)]


# Schedules are plans, not history: bounded years keep every zone conversion inside datetime's range.
FIRST_YEAR, LAST_YEAR = 2000, 2199


def _plausible_time(value: datetime | None) -> datetime | None:
    if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"the year must be between {FIRST_YEAR} and {LAST_YEAR}")
    return value


class TimeSlot(BaseModel):
    """A booked CPT slot. Times without a zone are read in the ad group's time zone."""

    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _year(cls, value: datetime) -> datetime:
        _plausible_time(value)
        return value


def _time_zone(value: str | None) -> str | None:
    return None if value is None else validate_time_zone(value)


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: EntityId | None = Field(default=None, description="Defaults to your own account.")
    objective: MarketingObjective
    name: Name
    promotion_type: PromotionType
    package_name: PackageName | None = Field(default=None, description="Required for app downloads.")
    landing_kind: LandingKind | None = Field(default=None, description="Required for non-download promotion.")
    landing_url: LandingUrl | None = Field(default=None, description="Required for non-download promotion.")
    iab_categories: IabCategories = []
    status: SettableStatus = "enabled"


class CampaignUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    promotion_type: PromotionType | None = None
    package_name: PackageName | None = None
    landing_kind: LandingKind | None = None
    landing_url: LandingUrl | None = None
    iab_categories: IabCategories | None = None
    status: SettableStatus | None = None


class CampaignRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    objective: MarketingObjective
    name: str
    promotion_type: PromotionType
    package_name: str | None
    landing_kind: LandingKind | None
    landing_url: str | None
    iab_categories: list[str] = []
    status: UserStatus
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    serving_status: ServingStatus | None = None
    serving_reason: str = ""
    spend_micros: int = Field(default=0, description="All charges, deleted ad groups' included.")
    ad_group_count: int = Field(default=0, description="Ad groups that are not deleted.")
    notice: str | None = Field(default=None, description="Side effects the caller should know about.")


class AdGroupFields(BaseModel):
    """Settings shared by create and update; every one is optional on update."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    promotion_channel: PromotionChannel | None = None
    target_group: TargetGroup | None = None
    placement_type: PlacementType | None = None
    publisher_ids: IdList | None = Field(default=None, description="Empty = every publisher of the placement.")
    ad_space_ids: IdList | None = Field(default=None, description="Empty = every ad space of the publishers.")
    targeting: Targeting | None = Field(default=None, description="Replaced as a whole.")
    time_zone: str | None = Field(default=None, description="IANA zone within UTC-12..UTC+12.")
    start_at: datetime | None = Field(default=None, description="Without a zone: in the ad group's time zone.")
    end_at: datetime | None = Field(default=None, description="None = runs until paused.")
    dayparting: Dayparting | None = Field(default=None, description="None = all day.")
    total_budget_micros: Micros | None = Field(default=None, description="None = unlimited.")
    daily_budget_micros: Micros | None = Field(default=None, description="None = unlimited.")
    pacing: Pacing | None = None
    frequency_cap_per_day: FrequencyCap | None = None
    bid_type: BidType | None = None
    bid_micros: BidMicros | None = None
    conversion_event: ConversionEvent | None = Field(default=None, description="CPA: the event paid for.")
    booked_impressions: BookedImpressions | None = Field(default=None, description="Guaranteed CPM only.")
    booked_slots: list[TimeSlot] | None = Field(default=None, max_length=200, description="CPT only.")
    status: SettableStatus | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _time_zone(value)

    @field_validator("start_at", "end_at")
    @classmethod
    def _year(cls, value: datetime | None) -> datetime | None:
        return _plausible_time(value)

    @field_validator("dayparting")
    @classmethod
    def _some_hour(cls, value: list[list[bool]] | None) -> list[list[bool]] | None:
        if value is not None and not any(any(row) for row in value):
            raise ValueError("choose at least one hour")
        return value


class AdGroupCreate(AdGroupFields):
    campaign_id: EntityId
    name: Name
    placement_type: PlacementType
    bid_type: BidType
    bid_micros: BidMicros


class AdGroupUpdate(AdGroupFields):
    pass


class AdGroupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    campaign_id: int
    name: str
    promotion_channel: PromotionChannel
    target_group: TargetGroup
    placement_type: PlacementType
    publisher_ids: list[int]
    ad_space_ids: list[int]
    targeting: Targeting
    time_zone: str
    start_at: datetime
    end_at: datetime | None
    dayparting: list[list[bool]] | None
    total_budget_micros: int | None
    daily_budget_micros: int | None
    pacing: Pacing
    frequency_cap_per_day: int | None
    bid_type: BidType
    bid_micros: int
    conversion_event: ConversionEvent | None
    booked_impressions: int | None
    booked_slots: list[TimeSlot]
    status: UserStatus
    review_status: ReviewStatus
    rejection_reasons: str
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    serving_status: ServingStatus | None = None
    serving_reason: str = ""
    spend_micros: int = 0
    expected_review_at: datetime | None = None
    notice: str | None = Field(default=None, description="Side effects the caller should know about.")


class CampaignSort(StrEnum):
    ID = "id"
    NAME = "name"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    STATUS = "status"
    OBJECTIVE = "objective"
    SPEND = "spend_micros"
    SERVING_STATUS = "serving_status"


class AdGroupSort(StrEnum):
    ID = "id"
    NAME = "name"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    STATUS = "status"
    REVIEW_STATUS = "review_status"
    PLACEMENT_TYPE = "placement_type"
    BID = "bid_micros"
    DAILY_BUDGET = "daily_budget_micros"
    TOTAL_BUDGET = "total_budget_micros"
    SPEND = "spend_micros"
    SERVING_STATUS = "serving_status"


class StatusBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[EntityId], Field(min_length=1, max_length=500)]
    action: StatusAction


class ItemResult(BaseModel):
    id: int
    ok: bool
    status: UserStatus | None = None
    error: dict[str, Any] | None = Field(default=None, description="The standard error shape's body.")


class StatusBatchOut(BaseModel):
    results: list[ItemResult]


class CopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, description="Defaults to the original's name + ' - copy'.")
    deep: bool = Field(default=False, description="Also copy the children (ad groups, creatives).")


class AdGroupCopyIn(CopyIn):
    campaign_id: EntityId | None = Field(default=None, description="Another campaign of the same account.")


class EstimateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: EntityId | None = Field(default=None, description="Whose audiences to count; yours by "
                                                                         "default.")
    placement_type: PlacementType
    targeting: Targeting = Field(default_factory=Targeting)
    publisher_ids: IdList = Field(default_factory=list)
    ad_space_ids: IdList = Field(default_factory=list)
    frequency_cap_per_day: FrequencyCap | None = None


class EstimateOut(BaseModel):
    users: int = Field(description="Active devices a day that match the targeting.")
    estimated_max_daily_impressions: int
    estimated_max_users: int = Field(description="Matching devices likely to see at least one ad a day.")
    countries: list[str] = Field(description="Countries the estimate covers.")
    unestimated: list[str] = Field(description="Criteria the population data cannot size; the figures are upper "
                                               "bounds for them.")
    source: str


MutateObjectType = Literal["campaign", "ad_group", "creative"]
MutateAction = Literal["create", "update", "enable", "pause", "delete"]
TempOrRealId = Annotated[int, Field(ge=-MAX_ID, le=MAX_ID)]


class MutateOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object_type: MutateObjectType
    action: MutateAction
    id: TempOrRealId | None = Field(default=None, description=(
        "The object to change; on create, an optional negative temporary id that later operations of the same "
        "batch may use as campaign_id, ad_group_id or id."))
    body: dict[str, Any] | None = Field(default=None, description="Create or update fields.")


class MutateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operations: Annotated[list[MutateOperation], Field(min_length=1, max_length=1000)]
    partial_failure: bool = Field(default=False, description="False: all operations or none.")
    validate_only: bool = Field(default=False, description="Check everything, write nothing.")


class MutateResult(BaseModel):
    index: int
    object_type: MutateObjectType
    action: MutateAction
    ok: bool
    id: int | None = None
    error: dict[str, Any] | None = None


class MutateOut(BaseModel):
    results: list[MutateResult]
    validate_only: bool
    applied: int = Field(description="Operations written.")
